/* <sys/types.h>: the POSIX scalar types (see bits/krunc.h). */
#ifndef _KRUNC_SYS_TYPES_H
#define _KRUNC_SYS_TYPES_H

#include <bits/krunc.h>

#endif
