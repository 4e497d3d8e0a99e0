/* <alloca.h>: stack allocation, which gcc does itself. */
#ifndef _KRUNC_ALLOCA_H
#define _KRUNC_ALLOCA_H

#include <bits/krunc.h>

#define alloca(n) __builtin_alloca(n)

#endif
