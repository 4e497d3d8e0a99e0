/*
 * printf beyond the table: floating point requests (no FP in a payload),
 * %n and %m, the allocating and descriptor forms, stdio output to
 * stdout/stderr, and scanf.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static int vwrap(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return r;
}

int main(void)
{
    char buf[128];

    /* A double argument is stepped over, not read: later arguments stay right. */
    snprintf(buf, sizeof(buf), "[%f|%d|%5.1e|%s|%-3g|%Lf|%d]", 1.5, 7, 2.0, "s", 3.0, 0.0L, 9);
    printf("float: %s\n", buf);
    /* Past the six argument registers, ints and doubles share the stack area in order. */
    snprintf(buf, sizeof(buf), "%d %d %d %f %d %d %e %d", 1, 2, 3, 1.0, 4, 5, 2.0, 6);
    CHECK(strcmp(buf, "1 2 3 ? 4 5 ? 6") == 0);

    int count = -1, r = snprintf(buf, sizeof(buf), "abc%nde", &count);
    CHECK(r == 5 && count == 3 && strcmp(buf, "abcde") == 0);
    long long big = 0;
    snprintf(buf, sizeof(buf), "%lld%lln", 123456789012LL, &big);
    CHECK(big == 12);

    errno = ENOENT;
    snprintf(buf, sizeof(buf), "%m");
    CHECK(strcmp(buf, "No such file or directory") == 0);

    char *s = NULL;
    r = asprintf(&s, "%s-%05d-%x", "alloc", 42, 0xbeef);
    CHECK(r == 16 && s && strcmp(s, "alloc-00042-beef") == 0);
    free(s);
    r = asprintf(&s, "%s", "");
    CHECK(r == 0 && s && *s == '\0');
    free(s);
    char *longer = NULL;
    r = asprintf(&longer, "%0300d", 1);     /* past any small first buffer */
    CHECK(r == 300 && longer && longer[299] == '1' && longer[0] == '0');
    free(longer);

    CHECK(vwrap(NULL, 0, "%d-%s", 12345, "xyz") == 9);
    CHECK(vwrap(buf, 4, "%d", 123456) == 6 && strcmp(buf, "123") == 0);
    CHECK(vwrap(buf, 1, "abc") == 3 && buf[0] == '\0');
    CHECK(sprintf(buf, "%3c|%-3c|", 'a', 'b') == 8 && strcmp(buf, "  a|b  |") == 0);
    CHECK(snprintf(buf, sizeof(buf), "%" PRId64 " %" PRIu64 " %" PRIx32, INT64_MIN, UINT64_MAX,
                   (uint32_t)0xdeadbeef) > 0);
    CHECK(strcmp(buf, "-9223372036854775808 18446744073709551615 deadbeef") == 0);
    CHECK(snprintf(buf, sizeof(buf), "%zu %zd %jd %td", (size_t)7, (ssize_t)-7, (intmax_t)-8,
                   (ptrdiff_t)9) == 9 && strcmp(buf, "7 -7 -8 9") == 0);
    /* Unknown and positional conversions come out as written. */
    snprintf(buf, sizeof(buf), "%y|%1$d|%", 5);
    printf("unknown: %s\n", buf);

    /* scanf */
    int a = 0, b = 0, n = 0;
    unsigned int x = 0;
    char word[16] = "", rest[16] = "";
    long l = 0;
    r = sscanf("  42 -17 0x1F hello  world", "%d %i %x %15s %n%15[a-z]", &a, &b, &x, word, &n, rest);
    CHECK(r == 5 && a == 42 && b == -17 && x == 0x1f && strcmp(word, "hello") == 0 &&
          n == 21 && strcmp(rest, "world") == 0);
    r = sscanf("010 0x10 10", "%i %i %li", &a, &b, &l);
    CHECK(r == 3 && a == 8 && b == 16 && l == 10);
    char c3[3];
    r = sscanf("abc:12", "%3c:%2d", c3, &a);
    CHECK(r == 2 && memcmp(c3, "abc", 3) == 0 && a == 12);
    r = sscanf("1.5", "%d.%d", &a, &b);
    CHECK(r == 2 && a == 1 && b == 5);
    r = sscanf("x", "%d", &a);
    CHECK(r == 0);
    r = sscanf("", "%d", &a);
    CHECK(r == EOF);
    r = sscanf("7 %", "%*d %%");
    CHECK(r == 0);
    short h = 0;
    unsigned char hh = 0;
    r = sscanf("300 255", "%hd %hhu", &h, &hh);
    CHECK(r == 2 && h == 300 && hh == 255);

    /* stdio streams: stderr unbuffered, stdout buffered (the test pipes it). */
    fprintf(stderr, "to stderr %d\n", 1);
    dprintf(2, "dprintf %s\n", "two");
    fputs("fputs line\n", stdout);
    puts("puts line");
    putchar('!');
    putchar('\n');
    return checks_done();
}
