/*
 * Strings and memory. The mem* functions are also what gcc emits calls to
 * for struct copies and zeroing, even in freestanding code.
 *
 * Bulk work uses `rep movsq`/`rep stosq` (general registers only) and the
 * string scans read a word at a time: guests on nested hosts can run
 * every instruction, and every iteration of a `rep`, at the cost of a trap
 * (about a microsecond each on krun's PVM development hosts), so doing
 * eight bytes per step is worth it there, and costs nothing elsewhere.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ONES  0x0101010101010101UL
#define HIGHS 0x8080808080808080UL

/* Nonzero when some byte of w is zero (the classic has-zero-byte test). */
static inline uint64_t zero_byte(uint64_t w)
{
    return (w - ONES) & ~w & HIGHS;
}

static inline uint64_t load64(const void *p)
{
    uint64_t w;
    __builtin_memcpy(&w, p, 8);
    return w;
}

void *memcpy(void *__krunc_restrict dst, const void *__krunc_restrict src, size_t n)
{
    void *d = dst;
    size_t words = n >> 3, rest = n & 7;
    __asm__ volatile("rep movsq\n\t"
                     "movq %[rest], %%rcx\n\t"
                     "rep movsb"
                     : "+D"(d), "+S"(src), "+c"(words)
                     : [rest] "r"(rest)
                     : "memory");
    return dst;
}

void *mempcpy(void *__krunc_restrict dst, const void *__krunc_restrict src, size_t n)
{
    return (char *)memcpy(dst, src, n) + n;
}

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;

    if (d <= s || d >= s + n)
        return memcpy(dst, src, n);
    /*
     * dst overlaps src from above: copy from the end down, the odd tail
     * bytes first, then whole words with the direction flag set (and
     * cleared again, as the ABI requires).
     */
    size_t words = n >> 3;
    for (size_t i = n; i > words * 8; i--)
        d[i - 1] = s[i - 1];
    if (words) {
        void *dp = d + (words - 1) * 8;
        const void *sp = s + (words - 1) * 8;
        __asm__ volatile("std\n\trep movsq\n\tcld"
                         : "+D"(dp), "+S"(sp), "+c"(words)
                         :
                         : "memory");
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    void *d = dst;
    uint64_t pattern = (unsigned char)c * ONES;
    size_t words = n >> 3, rest = n & 7;
    __asm__ volatile("rep stosq\n\t"
                     "movq %[rest], %%rcx\n\t"
                     "rep stosb"
                     : "+D"(d), "+c"(words)
                     : "a"(pattern), [rest] "r"(rest)
                     : "memory");
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    while (n >= 8 && load64(x) == load64(y)) {
        x += 8;
        y += 8;
        n -= 8;
    }
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

void *memchr(const void *s, int c, size_t n)
{
    const unsigned char *p = s;
    for (; n; n--, p++)
        if (*p == (unsigned char)c)
            return (void *)p;
    return 0;
}

void *memrchr(const void *s, int c, size_t n)
{
    const unsigned char *p = s;
    while (n--)
        if (p[n] == (unsigned char)c)
            return (void *)(p + n);
    return 0;
}

void *memmem(const void *hay, size_t hlen, const void *needle, size_t nlen)
{
    const unsigned char *h = hay, *nd = needle;
    if (nlen == 0)
        return (void *)hay;
    for (; hlen >= nlen; h++, hlen--)
        if (*h == *nd && memcmp(h, nd, nlen) == 0)
            return (void *)h;
    return 0;
}

void *memccpy(void *__krunc_restrict dst, const void *__krunc_restrict src, int c, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (; n; n--) {
        if ((*d++ = *s++) == (unsigned char)c)
            return d;
    }
    return 0;
}

/*
 * Byte by byte up to an 8-byte boundary, then whole words: an aligned word
 * never crosses into another page, so reading past the NUL is safe.
 */
size_t strlen(const char *s)
{
    const char *p = s;
    for (; (uintptr_t)p & 7; p++)
        if (!*p)
            return (size_t)(p - s);
    uint64_t hit;
    while (!(hit = zero_byte(load64(p))))
        p += 8;
    return (size_t)(p - s) + ((unsigned)__builtin_ctzl(hit) >> 3);
}

size_t strnlen(const char *s, size_t max)
{
    size_t n = 0;
    while (n < max && s[n])
        n++;
    return n;
}

int strcmp(const char *a, const char *b)
{
    for (; *a && *a == *b; a++, b++)
        ;
    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char *a, const char *b, size_t n)
{
    for (; n && *a && *a == *b; n--, a++, b++)
        ;
    return n ? (unsigned char)*a - (unsigned char)*b : 0;
}

/* Only the "C" locale: collation is byte order. */
int strcoll(const char *a, const char *b)
{
    return strcmp(a, b);
}

size_t strxfrm(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n)
{
    size_t len = strlen(src);
    if (len < n)
        memcpy(dst, src, len + 1);
    return len;
}

int strcasecmp(const char *a, const char *b)
{
    for (; *a && tolower((unsigned char)*a) == tolower((unsigned char)*b); a++, b++)
        ;
    return tolower((unsigned char)*a) - tolower((unsigned char)*b);
}

int strncasecmp(const char *a, const char *b, size_t n)
{
    for (; n && *a && tolower((unsigned char)*a) == tolower((unsigned char)*b); n--, a++, b++)
        ;
    return n ? tolower((unsigned char)*a) - tolower((unsigned char)*b) : 0;
}

char *strcpy(char *__krunc_restrict dst, const char *__krunc_restrict src)
{
    char *d = dst;
    while ((*d++ = *src++))
        ;
    return dst;
}

char *stpcpy(char *__krunc_restrict dst, const char *__krunc_restrict src)
{
    while ((*dst = *src++))
        dst++;
    return dst;
}

/* Pads with NULs up to n, and does not terminate a source of n or more bytes (C's rules). */
char *strncpy(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n)
{
    size_t i = 0;
    for (; i < n && src[i]; i++)
        dst[i] = src[i];
    memset(dst + i, 0, n - i);
    return dst;
}

char *stpncpy(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n)
{
    size_t i = 0;
    for (; i < n && src[i]; i++)
        dst[i] = src[i];
    memset(dst + i, 0, n - i);
    return dst + i;
}

size_t strlcpy(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n)
{
    size_t len = strlen(src);
    if (n) {
        size_t k = len < n - 1 ? len : n - 1;
        memcpy(dst, src, k);
        dst[k] = '\0';
    }
    return len;
}

size_t strlcat(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n)
{
    size_t have = strnlen(dst, n);
    if (have == n)
        return n + strlen(src);
    return have + strlcpy(dst + have, src, n - have);
}

char *strcat(char *__krunc_restrict dst, const char *__krunc_restrict src)
{
    strcpy(dst + strlen(dst), src);
    return dst;
}

/* Appends at most n bytes, then always a NUL. */
char *strncat(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n)
{
    char *d = dst + strlen(dst);
    size_t i = 0;
    for (; i < n && src[i]; i++)
        d[i] = src[i];
    d[i] = '\0';
    return dst;
}

char *strchr(const char *s, int c)
{
    for (;; s++) {
        if (*s == (char)c)
            return (char *)s;
        if (!*s)
            return 0;
    }
}

char *strchrnul(const char *s, int c)
{
    while (*s && *s != (char)c)
        s++;
    return (char *)s;
}

char *strrchr(const char *s, int c)
{
    const char *last = 0;
    for (;; s++) {
        if (*s == (char)c)
            last = s;
        if (!*s)
            return (char *)last;
    }
}

char *index(const char *s, int c) { return strchr(s, c); }
char *rindex(const char *s, int c) { return strrchr(s, c); }

char *strstr(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (n == 0)
        return (char *)hay;
    for (; *hay; hay++)
        if (*hay == *needle && strncmp(hay, needle, n) == 0)
            return (char *)hay;
    return 0;
}

char *strcasestr(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return (char *)hay;
    return n ? 0 : (char *)hay;
}

size_t strspn(const char *s, const char *accept)
{
    size_t n = 0;
    while (s[n] && strchr(accept, s[n]))
        n++;
    return n;
}

size_t strcspn(const char *s, const char *reject)
{
    size_t n = 0;
    while (s[n] && !strchr(reject, s[n]))
        n++;
    return n;
}

char *strpbrk(const char *s, const char *accept)
{
    s += strcspn(s, accept);
    return *s ? (char *)s : 0;
}

char *strtok_r(char *__krunc_restrict s, const char *__krunc_restrict delim,
               char **__krunc_restrict save)
{
    if (!s)
        s = *save;
    s += strspn(s, delim);
    if (!*s) {
        *save = s;
        return 0;
    }
    char *end = s + strcspn(s, delim);
    if (*end)
        *end++ = '\0';
    *save = end;
    return s;
}

char *strtok(char *__krunc_restrict s, const char *__krunc_restrict delim)
{
    static char *save = "";
    return strtok_r(s, delim, &save);
}

char *strsep(char **__krunc_restrict sp, const char *__krunc_restrict delim)
{
    char *s = *sp;
    if (!s)
        return 0;
    char *end = s + strcspn(s, delim);
    if (*end) {
        *end = '\0';
        *sp = end + 1;
    } else {
        *sp = 0;
    }
    return s;
}

char *strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    return p ? memcpy(p, s, n) : 0;
}

char *strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = malloc(len + 1);
    if (!p)
        return 0;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void bzero(void *p, size_t n) { memset(p, 0, n); }

/* The asm's memory clobber keeps the compiler from dropping the stores as dead. */
void explicit_bzero(void *p, size_t n)
{
    memset(p, 0, n);
    __asm__ volatile("" : : "r"(p) : "memory");
}

int bcmp(const void *a, const void *b, size_t n) { return memcmp(a, b, n); }
void bcopy(const void *src, void *dst, size_t n) { memmove(dst, src, n); }
int ffs(int x) { return __builtin_ffs(x); }
int ffsl(long x) { return __builtin_ffsl(x); }
int ffsll(long long x) { return __builtin_ffsll(x); }

/* ---- ctype: ASCII, the "C" locale ----------------------------------------- */

int isascii(int c) { return (unsigned)c < 128; }
int toascii(int c) { return c & 0x7f; }
int isdigit(int c) { return (unsigned)c - '0' < 10; }
int islower(int c) { return (unsigned)c - 'a' < 26; }
int isupper(int c) { return (unsigned)c - 'A' < 26; }
int isalpha(int c) { return ((unsigned)c | 32) - 'a' < 26; }
int isalnum(int c) { return isalpha(c) || isdigit(c); }
int isxdigit(int c) { return isdigit(c) || ((unsigned)c | 32) - 'a' < 6; }
int isblank(int c) { return c == ' ' || c == '\t'; }
int isspace(int c) { return c == ' ' || (unsigned)c - '\t' < 5; }
int iscntrl(int c) { return (unsigned)c < 32 || c == 127; }
int isprint(int c) { return (unsigned)c - 32 < 95; }
int isgraph(int c) { return (unsigned)c - 33 < 94; }
int ispunct(int c) { return isgraph(c) && !isalnum(c); }
int tolower(int c) { return isupper(c) ? c | 32 : c; }
int toupper(int c) { return islower(c) ? c & 0x5f : c; }
