/* <sched.h>: sched_yield only (one vCPU, no threads). */
#ifndef _KRUNC_SCHED_H
#define _KRUNC_SCHED_H

#include <bits/krunc.h>

__KRUNC_BEGIN

int sched_yield(void);

__KRUNC_END

#endif
