/* <malloc.h>: the allocator's extras. */
#ifndef _KRUNC_MALLOC_H
#define _KRUNC_MALLOC_H

#include <bits/krunc.h>
#include <stdlib.h>

__KRUNC_BEGIN

void *memalign(size_t align, size_t n) __attribute__((__malloc__));
size_t malloc_usable_size(void *p);

__KRUNC_END

#endif
