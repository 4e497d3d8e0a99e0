/*
 * malloc/calloc/realloc/free under a random workload: sizes from 0 bytes
 * to past the mmap threshold, every block marked with a pattern that is
 * checked before it is resized or freed, so overlaps and lost contents
 * show. Then alignment, reuse (a steady state must not keep growing the
 * heap), big blocks going back to KM, and error cases.
 * argv[1]: operations (default 600).
 *
 * Guest instructions are dear on krun's nested development hosts (about a
 * microsecond each), so big blocks are marked at their edges and at a
 * prime stride rather than in every byte.
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define SLOTS 256
#define EDGE 16
#define STRIDE 509

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t random_size(void)
{
    uint64_t r = next_rand() % 1000;
    if (r < 700)
        return next_rand() % 129;               /* small, zero included */
    if (r < 950)
        return 129 + next_rand() % 1024;
    if (r < 990)
        return 1024 + next_rand() % (64 * 1024);
    return 120 * 1024 + next_rand() % (16 * 1024);   /* across the mmap threshold */
}

/* The next byte to mark or check: every byte of the edges, a stride in between. */
static size_t step(size_t i, size_t n)
{
    if (n <= 2 * EDGE || i + 1 < EDGE || i + 1 >= n - EDGE)
        return i + 1;
    return i + STRIDE < n - EDGE ? i + STRIDE : n - EDGE;
}

static unsigned char pattern(int slot, size_t i)
{
    return (unsigned char)(slot * 31 + i * 7 + 1);
}

struct slot {
    unsigned char *p;
    size_t n;
};

static struct slot slots[SLOTS];

static void fill(int k)
{
    for (size_t i = 0; i < slots[k].n; i = step(i, slots[k].n))
        slots[k].p[i] = pattern(k, i);
}

/* The first `upto` bytes of a block marked for `n` bytes still hold the pattern. */
static int intact(int k, size_t n, size_t upto)
{
    for (size_t i = 0; i < upto; i = step(i, n))
        if (slots[k].p[i] != pattern(k, i))
            return 0;
    return 1;
}

static int zeroed(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i = step(i, n))
        if (p[i])
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    long ops = argc > 1 ? atol(argv[1]) : 600;
    int bad_content = 0, bad_align = 0, failed = 0;
    size_t live = 0, max_live = 0;

    for (long op = 0; op < ops; op++) {
        int k = (int)(next_rand() % SLOTS);
        struct slot *s = &slots[k];
        if (s->p && !intact(k, s->n, s->n))
            bad_content++;
        uint64_t what = next_rand() % 10;
        if (!s->p || what < 3) {            /* (re)allocate fresh */
            free(s->p);
            live -= s->p ? s->n : 0;
            s->n = random_size();
            s->p = what == 0 ? calloc(1, s->n) : malloc(s->n);
            live += s->n;
            if (what == 0 && s->p)
                bad_content += !zeroed(s->p, s->n);
        } else if (what < 7) {              /* realloc: the prefix must survive */
            size_t n = random_size(), keep = n < s->n ? n : s->n;
            unsigned char *q = realloc(s->p, n ? n : 1);
            if (!q) {
                failed++;
                continue;
            }
            s->p = q;
            if (!intact(k, s->n, keep))
                bad_content++;
            live += n - s->n;
            s->n = n;
        } else {
            free(s->p);
            live -= s->n;
            s->p = NULL;
            s->n = 0;
            continue;
        }
        if (!s->p) {
            failed++;
            s->n = 0;
            continue;
        }
        bad_align += ((uintptr_t)s->p & 15) != 0;
        fill(k);
        if (live > max_live)
            max_live = live;
    }
    for (int k = 0; k < SLOTS; k++) {
        if (slots[k].p && !intact(k, slots[k].n, slots[k].n))
            bad_content++;
        free(slots[k].p);
    }
    CHECK(bad_content == 0);
    CHECK(bad_align == 0);
    CHECK(failed == 0);
    printf("ops=%ld\n", ops);

    /* A steady state reuses freed blocks: the break stops moving. */
    void *keep[64];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 64; i++)
            keep[i] = malloc(1000 + (size_t)i * 100);
        for (int i = 0; i < 64; i++)
            free(keep[i]);
    }
    void *brk_before = sbrk(0);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 64; i++)
            keep[i] = malloc(1000 + (size_t)i * 100);
        for (int i = 0; i < 64; i++)
            free(keep[i]);
    }
    CHECK(sbrk(0) == brk_before);

    /* Big blocks go back to KM: 400 MiB in 4 MiB blocks, one at a time. */
    for (int i = 0; i < 100; i++) {
        char *big = malloc(4 << 20);
        CHECK(big != NULL);
        if (!big)
            break;
        big[0] = big[(4 << 20) - 1] = 1;
        free(big);
    }

    for (size_t align = 16; align <= 8192; align *= 2) {
        void *p = aligned_alloc(align, 100);
        CHECK(p && ((uintptr_t)p & (align - 1)) == 0);
        memset(p, 0xab, 100);
        CHECK(malloc_usable_size(p) >= 100);
        void *q = realloc(p, 5000);     /* realloc of an aligned block keeps the bytes */
        CHECK(q && ((unsigned char *)q)[99] == 0xab);
        free(q);
        void *m = NULL;
        CHECK(posix_memalign(&m, align, 33) == 0 && ((uintptr_t)m & (align - 1)) == 0);
        free(m);
    }
    void *m = NULL;
    CHECK(posix_memalign(&m, 24, 8) == EINVAL);
    errno = 0;
    CHECK(malloc((size_t)-1 / 2) == NULL && errno == ENOMEM);
    volatile size_t huge = (size_t)1 << 40;    /* volatile: gcc would reject the constant */
    CHECK(calloc(huge, huge) == NULL);
    void *z = malloc(0);
    CHECK(z != NULL);
    free(z);
    free(NULL);
    CHECK(realloc(malloc(10), 0) == NULL);
    printf("max_live=%zu\n", max_live);
    return checks_done();
}
