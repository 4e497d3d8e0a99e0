/* <sys/random.h>: random bytes from the host kernel. */
#ifndef _KRUNC_SYS_RANDOM_H
#define _KRUNC_SYS_RANDOM_H

#include <bits/krunc.h>

__KRUNC_BEGIN

#define GRND_NONBLOCK 1
#define GRND_RANDOM 2

ssize_t getrandom(void *buf, size_t n, unsigned int flags);

__KRUNC_END

#endif
