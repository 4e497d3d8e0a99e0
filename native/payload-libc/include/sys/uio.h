/* <sys/uio.h>: vectored I/O. */
#ifndef _KRUNC_SYS_UIO_H
#define _KRUNC_SYS_UIO_H

#include <bits/krunc.h>

__KRUNC_BEGIN

struct iovec {
    void *iov_base;
    size_t iov_len;
};

ssize_t readv(int fd, const struct iovec *iov, int n);
ssize_t writev(int fd, const struct iovec *iov, int n);

__KRUNC_END

#endif
