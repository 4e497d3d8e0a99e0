/*
 * <sys/mman.h>: memory mappings. KM maps anonymous memory and copies
 * private file mappings; a shared writable file mapping fails (ENODEV).
 * Guest pages are always readable, writable and executable: mprotect is
 * accepted and changes nothing.
 */
#ifndef _KRUNC_SYS_MMAN_H
#define _KRUNC_SYS_MMAN_H

#include <bits/krunc.h>

__KRUNC_BEGIN

#define PROT_NONE  0
#define PROT_READ  1
#define PROT_WRITE 2
#define PROT_EXEC  4

#define MAP_SHARED    0x01
#define MAP_PRIVATE   0x02
#define MAP_TYPE      0x0f
#define MAP_FIXED     0x10
#define MAP_ANONYMOUS 0x20
#define MAP_ANON      MAP_ANONYMOUS
#define MAP_NORESERVE 0x4000
#define MAP_POPULATE  0x8000
#define MAP_FIXED_NOREPLACE 0x100000
#define MAP_FAILED ((void *)-1)

#define MADV_NORMAL   0
#define MADV_RANDOM   1
#define MADV_SEQUENTIAL 2
#define MADV_WILLNEED 3
#define MADV_DONTNEED 4

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int munmap(void *addr, size_t len);
int mprotect(void *addr, size_t len, int prot);
int madvise(void *addr, size_t len, int advice);

__KRUNC_END

#endif
