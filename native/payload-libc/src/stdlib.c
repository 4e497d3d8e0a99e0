/* Number parsing, arithmetic helpers, sorting and searching, random numbers. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * The core of strto*: the magnitude (saturated at UINT64_MAX, *over set),
 * and in *neg whether a "-" came first. C's rules: leading space, a sign,
 * "0x" for base 16 or 0, a leading "0" means octal for base 0; no digits
 * at all leaves *end at s.
 */
static uint64_t parse(const char *s, char **end, int base, int *neg, int *over)
{
    const char *p = s;
    uint64_t v = 0;
    int any = 0;

    *neg = *over = 0;
    if (base < 0 || base == 1 || base > 36) {
        errno = EINVAL;
        if (end)
            *end = (char *)s;
        return 0;
    }
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '+' || *p == '-')
        *neg = *p++ == '-';
    if ((base == 0 || base == 16) && p[0] == '0' && (p[1] | 32) == 'x' &&
        isxdigit((unsigned char)p[2])) {
        p += 2;
        base = 16;
    } else if (base == 0) {
        base = p[0] == '0' ? 8 : 10;
    }
    for (;; p++) {
        int d;
        if (isdigit((unsigned char)*p))
            d = *p - '0';
        else if (isalpha((unsigned char)*p))
            d = (*p | 32) - 'a' + 10;
        else
            break;
        if (d >= base)
            break;
        any = 1;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            *over = 1;
        else if (!*over)
            v = v * (uint64_t)base + (uint64_t)d;
    }
    if (end)
        *end = (char *)(any ? p : s);
    return *over ? UINT64_MAX : v;
}

long long strtoll(const char *__krunc_restrict s, char **__krunc_restrict end, int base)
{
    int neg, over;
    uint64_t v = parse(s, end, base, &neg, &over);
    uint64_t limit = neg ? (uint64_t)LLONG_MAX + 1 : (uint64_t)LLONG_MAX;
    if (over || v > limit) {
        errno = ERANGE;
        return neg ? LLONG_MIN : LLONG_MAX;
    }
    return neg ? (long long)(0 - v) : (long long)v;
}

long strtol(const char *__krunc_restrict s, char **__krunc_restrict end, int base)
{
    return strtoll(s, end, base);
}

/* strtoul negates a "-" number in the unsigned type, as C says ("-1" is ULONG_MAX). */
unsigned long long strtoull(const char *__krunc_restrict s, char **__krunc_restrict end, int base)
{
    int neg, over;
    uint64_t v = parse(s, end, base, &neg, &over);
    if (over) {
        errno = ERANGE;
        return UINT64_MAX;
    }
    return neg ? 0 - v : v;
}

unsigned long strtoul(const char *__krunc_restrict s, char **__krunc_restrict end, int base)
{
    return strtoull(s, end, base);
}

intmax_t strtoimax(const char *__krunc_restrict s, char **__krunc_restrict end, int base)
{
    return strtoll(s, end, base);
}

uintmax_t strtoumax(const char *__krunc_restrict s, char **__krunc_restrict end, int base)
{
    return strtoull(s, end, base);
}

int atoi(const char *s) { return (int)strtol(s, 0, 10); }
long atol(const char *s) { return strtol(s, 0, 10); }
long long atoll(const char *s) { return strtoll(s, 0, 10); }

int abs(int x) { return x < 0 ? -x : x; }
long labs(long x) { return x < 0 ? -x : x; }
long long llabs(long long x) { return x < 0 ? -x : x; }
intmax_t imaxabs(intmax_t x) { return x < 0 ? -x : x; }
div_t div(int a, int b) { return (div_t){ a / b, a % b }; }
ldiv_t ldiv(long a, long b) { return (ldiv_t){ a / b, a % b }; }
lldiv_t lldiv(long long a, long long b) { return (lldiv_t){ a / b, a % b }; }
imaxdiv_t imaxdiv(intmax_t a, intmax_t b) { return (imaxdiv_t){ a / b, a % b }; }

/* ---- sorting -------------------------------------------------------------- */

struct sorter {
    size_t size;
    int (*cmp)(const void *, const void *, void *);
    void *arg;
};

/* Eight bytes a step where it can: elements are usually ints, longs or pointers. */
static void swap(char *a, char *b, size_t n)
{
    for (; n >= 8; n -= 8, a += 8, b += 8) {
        uint64_t x, y;
        __builtin_memcpy(&x, a, 8);
        __builtin_memcpy(&y, b, 8);
        __builtin_memcpy(a, &y, 8);
        __builtin_memcpy(b, &x, 8);
    }
    if (n >= 4) {
        uint32_t x, y;
        __builtin_memcpy(&x, a, 4);
        __builtin_memcpy(&y, b, 4);
        __builtin_memcpy(a, &y, 4);
        __builtin_memcpy(b, &x, 4);
        n -= 4, a += 4, b += 4;
    }
    while (n--) {
        char t = *a;
        *a++ = *b;
        *b++ = t;
    }
}

static int cmp_at(const struct sorter *s, char *base, size_t i, size_t j)
{
    return s->cmp(base + i * s->size, base + j * s->size, s->arg);
}

/*
 * Quicksort with a median-of-three pivot; recursion only into the smaller
 * part, so the stack stays O(log n); insertion sort for short runs.
 */
static void sort(const struct sorter *s, char *base, size_t n)
{
    size_t sz = s->size;
    while (n > 12) {
        size_t mid = n / 2, last = n - 1;
        if (cmp_at(s, base, mid, 0) < 0)
            swap(base + mid * sz, base, sz);
        if (cmp_at(s, base, last, mid) < 0) {
            swap(base + last * sz, base + mid * sz, sz);
            if (cmp_at(s, base, mid, 0) < 0)
                swap(base + mid * sz, base, sz);
        }
        swap(base + mid * sz, base + (last - 1) * sz, sz);     /* pivot at last-1 */
        size_t i = 0, j = last - 1;
        for (;;) {
            while (cmp_at(s, base, ++i, last - 1) < 0)
                ;
            while (j > 0 && cmp_at(s, base, --j, last - 1) > 0)
                ;
            if (i >= j)
                break;
            swap(base + i * sz, base + j * sz, sz);
        }
        swap(base + i * sz, base + (last - 1) * sz, sz);
        size_t left = i, right = n - i - 1;
        if (left < right) {
            sort(s, base, left);
            base += (i + 1) * sz;
            n = right;
        } else {
            sort(s, base + (i + 1) * sz, right);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && cmp_at(s, base, j - 1, j) > 0; j--)
            swap(base + (j - 1) * sz, base + j * sz, sz);
}

void qsort_r(void *base, size_t n, size_t size,
             int (*cmp)(const void *, const void *, void *), void *arg)
{
    struct sorter s = { size, cmp, arg };
    if (size)
        sort(&s, base, n);
}

static int plain_cmp(const void *a, const void *b, void *arg)
{
    return ((int (*)(const void *, const void *))arg)(a, b);
}

void qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    qsort_r(base, n, size, plain_cmp, (void *)cmp);
}

void *bsearch(const void *key, const void *base, size_t n, size_t size,
              int (*cmp)(const void *, const void *))
{
    const char *lo = base;
    while (n > 0) {
        const char *mid = lo + (n / 2) * size;
        int c = cmp(key, mid);
        if (c == 0)
            return (void *)mid;
        if (c > 0) {
            lo = mid + size;
            n -= n / 2 + 1;
        } else {
            n /= 2;
        }
    }
    return 0;
}

/* ---- random numbers ------------------------------------------------------- */

/* A 64-bit LCG (Knuth's MMIX constants); rand returns its top 31 bits. */
static uint64_t rand_state = 1;

static int lcg_next(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int)(*state >> 33);
}

int rand(void) { return lcg_next(&rand_state); }
void srand(unsigned int seed) { rand_state = seed; }
long random(void) { return lcg_next(&rand_state); }
void srandom(unsigned int seed) { rand_state = seed; }

int rand_r(unsigned int *seed)
{
    uint64_t st = *seed;
    int r = lcg_next(&st);
    *seed = (unsigned int)st;
    return r;
}

/* ---- temporary names ------------------------------------------------------ */

/* Replaces the trailing XXXXXX with random letters; 0, or -1 with EINVAL. */
static int fill_template(char *tmpl)
{
    static const char set[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t len = strlen(tmpl);
    unsigned char rnd[6];

    if (len < 6 || memcmp(tmpl + len - 6, "XXXXXX", 6) != 0) {
        errno = EINVAL;
        return -1;
    }
    if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
        for (int i = 0; i < 6; i++)
            rnd[i] = (unsigned char)rand();
    }
    for (int i = 0; i < 6; i++)
        tmpl[len - 6 + i] = set[rnd[i] % (sizeof(set) - 1)];
    return 0;
}

int mkstemp(char *tmpl)
{
    for (int tries = 0; tries < 100; tries++) {
        if (fill_template(tmpl) < 0)
            return -1;
        int fd = open(tmpl, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd >= 0 || errno != EEXIST)
            return fd;
        memcpy(tmpl + strlen(tmpl) - 6, "XXXXXX", 6);
    }
    return -1;
}

char *mkdtemp(char *tmpl)
{
    for (int tries = 0; tries < 100; tries++) {
        if (fill_template(tmpl) < 0)
            return 0;
        if (mkdir(tmpl, 0700) == 0)
            return tmpl;
        if (errno != EEXIST)
            return 0;
        memcpy(tmpl + strlen(tmpl) - 6, "XXXXXX", 6);
    }
    return 0;
}

/* ---- path components ------------------------------------------------------ */

char *basename(char *path)
{
    if (!path || !*path)
        return ".";
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        path[--n] = '\0';
    char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

char *dirname(char *path)
{
    if (!path || !*path)
        return ".";
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    while (n > 0 && path[n - 1] != '/')
        n--;
    if (n == 0)
        return ".";
    while (n > 1 && path[n - 1] == '/')
        n--;
    path[n] = '\0';
    return path;
}
