/*
 * krunc: the payload C library's shared definitions. Every public header
 * includes this one; it holds the scalar types POSIX lets any header define
 * (the `_t` names are the implementation's) with the x86-64 Linux sizes the
 * hypercalls expect, since KM passes most calls straight to the host kernel.
 */
#ifndef _KRUNC_BITS_KRUNC_H
#define _KRUNC_BITS_KRUNC_H

/* Lets code tell it is built against the payload runtime. */
#define __krunc__ 1
#define __KRUNC_VERSION__ 100   /* 1.0.0 */

#define __need_size_t
#define __need_NULL
#include <stddef.h>

#ifdef __cplusplus
#define __KRUNC_BEGIN extern "C" {
#define __KRUNC_END }
#define __krunc_restrict
#else
#define __KRUNC_BEGIN
#define __KRUNC_END
#define __krunc_restrict __restrict
#endif

#define __krunc_noreturn __attribute__((__noreturn__))
#define __krunc_printf(f, a) __attribute__((__format__(__printf__, f, a)))
#define __krunc_scanf(f, a) __attribute__((__format__(__scanf__, f, a)))

typedef long ssize_t;
typedef long off_t;
typedef int pid_t;
typedef unsigned int uid_t;
typedef unsigned int gid_t;
typedef unsigned int id_t;
typedef unsigned int mode_t;
typedef unsigned long dev_t;
typedef unsigned long ino_t;
typedef unsigned long nlink_t;
typedef long blksize_t;
typedef long blkcnt_t;
typedef long time_t;
typedef long suseconds_t;
typedef unsigned int useconds_t;
typedef long clock_t;
typedef int clockid_t;
typedef int key_t;

#ifndef _KRUNC_TIMESPEC_DEFINED
#define _KRUNC_TIMESPEC_DEFINED
/* The kernel's struct timespec on x86-64 (16 bytes). */
struct timespec {
    time_t tv_sec;
    long tv_nsec;
};
#endif

#endif
