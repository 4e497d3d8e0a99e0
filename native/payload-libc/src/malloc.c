/*
 * The allocator: size classes over brk, mmap for big blocks.
 *
 * Every block has a 16-byte header just below it (so blocks stay 16-byte
 * aligned): its usable size and a tag saying which kind it is. Small
 * requests (up to 128 KiB) round up to one of 48 classes (16-byte steps to
 * 128, then four steps per power of two) and are carved from an arena that
 * grows with brk, or with mmap once brk cannot grow (KM may have placed a
 * mapping right after the break). Freed small blocks go on their class's
 * free list and are reused as they are, never split or merged; big blocks
 * are their own mapping and go back to KM on free. One thread, so no locks.
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define HDR 16
#define NCLASSES 48
#define SMALL_MAX (128 * 1024)
#define ARENA_STEP (256 * 1024)
#define PAGE 4096

/* Tags: the high half tells a live header from garbage; the low byte is the class. */
#define TAG_MAGIC   0x6b72756e00000000UL    /* "krun" */
#define TAG_MASK    0xffffffff00000000UL
#define KIND_SMALL  0x100
#define KIND_FREE   0x200
#define KIND_LARGE  0x300
#define KIND_ALIGNED 0x400  /* an aligned block inside another: size = offset back to it */
#define KIND_MASK   0xf00

struct hdr {
    size_t size;
    uint64_t tag;
};

struct free_block {
    struct free_block *next;
};

static struct free_block *free_lists[NCLASSES];
static uintptr_t arena_cur, arena_end;
static int brk_failed;

static size_t class_size(unsigned c)
{
    if (c < 8)
        return (c + 1) * 16;
    unsigned b = 7 + (c - 8) / 4, k = 4 + (c - 8) % 4;
    return (size_t)(k + 1) << (b - 2);
}

static unsigned size_class(size_t n)
{
    if (n <= 128)
        return n ? (unsigned)((n - 1) / 16) : 0;
    unsigned b = 63 - (unsigned)__builtin_clzl(n - 1);    /* 2^b <= n-1 < 2^(b+1) */
    return 8 + (b - 7) * 4 + (unsigned)((n - 1) >> (b - 2)) - 4;
}

static struct hdr *header(void *p)
{
    return (struct hdr *)((char *)p - HDR);
}

__krunc_noreturn static void corrupt(const char *what)
{
    static const char prefix[] = "krunc: ";
    HC3(NR_write, 2, prefix, sizeof(prefix) - 1);
    HC3(NR_write, 2, what, strlen(what));
    HC3(NR_write, 2, "\n", 1);
    abort();
}

static void *map_pages(size_t len)
{
    void *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? 0 : p;
}

/* Room for `need` more bytes in the arena: extend the break, else a fresh mapping. */
static int arena_grow(size_t need)
{
    size_t step = need > ARENA_STEP ? (need + PAGE - 1) & ~(size_t)(PAGE - 1) : ARENA_STEP;
    if (!brk_failed) {
        uintptr_t cur = (uintptr_t)sbrk(0);
        /* First use, or the payload moved the break itself: start again at the break. */
        if (cur != arena_end)
            arena_cur = arena_end = (cur + 15) & ~(uintptr_t)15;
        if (brk((void *)(arena_end + step)) == 0) {
            arena_end += step;
            return 0;
        }
        brk_failed = 1;
    }
    void *p = map_pages(step);
    if (!p)
        return -1;
    arena_cur = (uintptr_t)p;   /* the old arena's tail is given up */
    arena_end = arena_cur + step;
    return 0;
}

static void *alloc_small(unsigned c)
{
    struct free_block *f = free_lists[c];
    struct hdr *h;

    if (f) {
        free_lists[c] = f->next;
        h = header(f);
        if (h->tag != (TAG_MAGIC | KIND_FREE | c))
            corrupt("malloc(): a free block was overwritten");
    } else {
        size_t total = HDR + class_size(c);
        if (arena_end - arena_cur < total && arena_grow(total) < 0)
            return 0;
        h = (struct hdr *)arena_cur;
        arena_cur += total;
    }
    h->size = class_size(c);
    h->tag = TAG_MAGIC | KIND_SMALL | c;
    return (char *)h + HDR;
}

static void *alloc_large(size_t n)
{
    if (n > SIZE_MAX - HDR - PAGE)
        return 0;
    size_t len = (n + HDR + PAGE - 1) & ~(size_t)(PAGE - 1);
    struct hdr *h = map_pages(len);
    if (!h)
        return 0;
    h->size = len - HDR;
    h->tag = TAG_MAGIC | KIND_LARGE;
    return (char *)h + HDR;
}

/* malloc's body, without malloc's attributes: gcc would flag the header peeks below. */
static void *allocate(size_t n)
{
    void *p = n <= SMALL_MAX ? alloc_small(size_class(n)) : alloc_large(n);
    if (!p)
        errno = ENOMEM;
    return p;
}

void *malloc(size_t n)
{
    return allocate(n);
}

/* The header of a live block, or a report and abort for anything else. */
static struct hdr *live_header(void *p, const char *who)
{
    struct hdr *h = header(p);
    if (((uintptr_t)p & 15) || (h->tag & TAG_MASK) != TAG_MAGIC)
        corrupt(who);
    if ((h->tag & KIND_MASK) == KIND_FREE)
        corrupt("free(): double free");
    return h;
}

void free(void *p)
{
    if (!p)
        return;
    struct hdr *h = live_header(p, "free(): invalid pointer");
    switch (h->tag & KIND_MASK) {
    case KIND_SMALL: {
        unsigned c = (unsigned)(h->tag & 0xff);
        struct free_block *f = p;
        h->tag = TAG_MAGIC | KIND_FREE | c;
        f->next = free_lists[c];
        free_lists[c] = f;
        break;
    }
    case KIND_LARGE:
        h->tag = 0;
        munmap(h, h->size + HDR);
        break;
    case KIND_ALIGNED:
        free((char *)p - h->size);
        break;
    default:
        corrupt("free(): invalid pointer");
    }
}

size_t malloc_usable_size(void *p)
{
    if (!p)
        return 0;
    struct hdr *h = live_header(p, "malloc_usable_size(): invalid pointer");
    if ((h->tag & KIND_MASK) == KIND_ALIGNED) {
        char *outer = (char *)p - h->size;
        return malloc_usable_size(outer) - h->size;
    }
    return h->size;
}

void *calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return 0;
    }
    void *p = allocate(total);
    /* Reused small blocks are dirty; a big block is a fresh mapping, already zero. */
    if (p && (header(p)->tag & KIND_MASK) != KIND_LARGE)
        memset(p, 0, total);
    return p;
}

/* realloc(p, 0) frees p and returns NULL, as glibc's does. */
void *realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (n == 0) {
        free(p);
        return 0;
    }
    size_t have = malloc_usable_size(p);
    struct hdr *h = header(p);
    /* Keep the block if it fits and is not more than twice what is needed. */
    if (n <= have && ((h->tag & KIND_MASK) != KIND_SMALL || size_class(n) + 4 >= size_class(have)))
        return p;
    void *q = malloc(n);
    if (!q)
        return 0;
    memcpy(q, p, n < have ? n : have);
    free(p);
    return q;
}

void *reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return 0;
    }
    return realloc(p, total);
}

/* Alignments above 16: a bigger block, and a header at the aligned spot pointing back. */
static void *alloc_aligned(size_t align, size_t n)
{
    if (align <= 16)
        return malloc(n);
    if (n > SIZE_MAX - align - HDR) {
        errno = ENOMEM;
        return 0;
    }
    char *outer = malloc(n + align + HDR);
    if (!outer || ((uintptr_t)outer & (align - 1)) == 0)
        return outer;
    uintptr_t at = ((uintptr_t)outer + HDR + align - 1) & ~(uintptr_t)(align - 1);
    struct hdr *h = header((void *)at);
    h->size = at - (uintptr_t)outer;
    h->tag = TAG_MAGIC | KIND_ALIGNED;
    return (void *)at;
}

static int bad_alignment(size_t align)
{
    return align == 0 || (align & (align - 1)) != 0;
}

void *aligned_alloc(size_t align, size_t n)
{
    if (bad_alignment(align)) {
        errno = EINVAL;
        return 0;
    }
    return alloc_aligned(align, n);
}

void *memalign(size_t align, size_t n)
{
    return aligned_alloc(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (bad_alignment(align) || align % sizeof(void *) != 0)
        return EINVAL;
    int saved = errno;
    void *p = alloc_aligned(align, n);
    errno = saved;
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
