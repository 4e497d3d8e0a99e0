/*
 * <limits.h>: gcc's own (the integer limits) plus the POSIX limits a
 * libc adds. _LIBC_LIMITS_H_ tells gcc's header not to look for yet
 * another one after it.
 */
#ifndef _KRUNC_LIMITS_H
#define _KRUNC_LIMITS_H
#define _LIBC_LIMITS_H_ 1

#include_next <limits.h>

#define PATH_MAX 4096
#define NAME_MAX 255
#define PIPE_BUF 4096
#define ARG_MAX 131072
#define IOV_MAX 1024
#define NGROUPS_MAX 65536
#define LINE_MAX 2048
#define HOST_NAME_MAX 64
#define LOGIN_NAME_MAX 256
#define TTY_NAME_MAX 32
#define SYMLOOP_MAX 40
#define PAGESIZE 4096
#define PAGE_SIZE PAGESIZE
#define NL_ARGMAX 9
#define ATEXIT_MAX 0x7fffffff
#ifndef SSIZE_MAX
#define SSIZE_MAX LONG_MAX
#endif

#endif
