/*
 * <stdint.h>: gcc's own definitions (stdint-gcc.h), which gcc's stdint.h
 * uses only in freestanding mode; in hosted mode it would look for a libc
 * <stdint.h> after itself and find none. This makes both modes work.
 */
#ifndef _KRUNC_STDINT_H
#define _KRUNC_STDINT_H

#include <stdint-gcc.h>

#endif
