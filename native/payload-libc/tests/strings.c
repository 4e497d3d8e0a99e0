/*
 * string.h, strings.h, stdlib.h's parsing, sorting and searching, ctype,
 * getopt, libgen, setjmp. Self-checking; also prints one "ctype" line,
 * " c:classes:tolower:toupper" for EOF and 0..255, for the test to compare
 * with the host C library's "C" locale.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "check.h"

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static jmp_buf jb;

static void jumper(int depth)
{
    if (depth == 0)
        longjmp(jb, 0);     /* 0 arrives as 1 */
    jumper(depth - 1);
}

static uint32_t seed = 12345;

static int next_int(void)
{
    seed = seed * 1103515245u + 12345u;
    return (int)(seed >> 8) - (1 << 22);
}

int main(void)
{
    char buf[64];

    /* memory */
    memset(buf, 'x', sizeof(buf));
    CHECK(memcpy(buf, "abcdef", 6) == buf && memcmp(buf, "abcdefx", 7) == 0);
    memmove(buf + 2, buf, 6);
    CHECK(memcmp(buf, "ababcdef", 8) == 0);
    memmove(buf, buf + 2, 6);
    CHECK(memcmp(buf, "abcdefef", 8) == 0);
    char big[300];
    for (int i = 0; i < 300; i++)
        big[i] = (char)i;
    memmove(big + 1, big, 299);     /* long overlapping copy upwards */
    CHECK(big[0] == 0 && big[1] == 0 && big[299] == (char)298 && big[150] == (char)149);
    CHECK(memcmp("abc", "abd", 3) < 0 && memcmp("abc", "abc", 3) == 0 && memcmp("b", "a", 1) > 0);
    CHECK(memcmp("\xff", "\x01", 1) > 0);      /* bytes compare unsigned */
    const char *hello = "hello";
    CHECK(memchr(hello, 'l', 5) == hello + 2);
    CHECK(memchr("hello", 'z', 5) == NULL);
    const char *hay = "xxabcabc";
    CHECK(memrchr(hay, 'a', 8) == hay + 5 && memmem(hay, 8, "cab", 3) == hay + 4);

    /* strings */
    CHECK(strlen("") == 0 && strlen("four") == 4 && strnlen("four", 2) == 2);
    CHECK(strcmp("a", "b") < 0 && strcmp("b", "a") > 0 && strcmp("same", "same") == 0);
    CHECK(strcmp("a", "ab") < 0 && strncmp("abcX", "abcY", 3) == 0 && strncmp("ab", "ac", 0) == 0);
    CHECK(strcasecmp("HeLLo", "hello") == 0 && strncasecmp("ABCd", "abce", 3) == 0);
    CHECK(strcasecmp("a", "B") < 0);
    CHECK(strcpy(buf, "copy") == buf && strcmp(buf, "copy") == 0);
    CHECK(strcat(buf, "+cat") == buf && strcmp(buf, "copy+cat") == 0);
    CHECK(strncat(buf, "12345", 2) == buf && strcmp(buf, "copy+cat12") == 0);
    memset(buf, 'z', 10);
    CHECK(strncpy(buf, "ab", 5) == buf && memcmp(buf, "ab\0\0\0zz", 7) == 0);
    CHECK(strncpy(buf, "abcdef", 3) == buf && memcmp(buf, "abc\0", 4) == 0);
    CHECK(stpcpy(buf, "end") == buf + 3);
    CHECK(strlcpy(buf, "truncate me", 5) == 11 && strcmp(buf, "trun") == 0);
    CHECK(strchr("path/to/file", '/') != NULL && strcmp(strchr("path/to/file", '/'), "/to/file") == 0);
    CHECK(strcmp(strrchr("path/to/file", '/'), "/file") == 0 && strchr("abc", 'z') == NULL);
    CHECK(strchr("abc", '\0') != NULL && *strchr("abc", '\0') == '\0');
    CHECK(strcmp(strstr("haystack needle", "need"), "needle") == 0 && strstr("abc", "") != NULL);
    CHECK(strstr("aaab", "aab") != NULL && strstr("abc", "abcd") == NULL);
    CHECK(strspn("aabbc", "ab") == 4 && strcspn("hello, world", ", ") == 5);
    CHECK(strcmp(strpbrk("key=value", "=:"), "=value") == 0 && strpbrk("abc", "xyz") == NULL);
    char *d = strdup("duplicate");
    CHECK(d && strcmp(d, "duplicate") == 0);
    free(d);
    d = strndup("duplicate", 3);
    CHECK(d && strcmp(d, "dup") == 0);
    free(d);

    char toks[] = "  one, two,,three  ";
    char *t1 = strtok(toks, " ,"), *t2 = strtok(NULL, " ,"), *t3 = strtok(NULL, " ,");
    CHECK(t1 && t2 && t3 && strcmp(t1, "one") == 0 && strcmp(t2, "two") == 0 &&
          strcmp(t3, "three") == 0 && strtok(NULL, " ,") == NULL);
    char fields[] = "a::b", *sp = fields;
    char *f1 = strsep(&sp, ":"), *f2 = strsep(&sp, ":"), *f3 = strsep(&sp, ":");
    CHECK(strcmp(f1, "a") == 0 && strcmp(f2, "") == 0 && strcmp(f3, "b") == 0 && sp == NULL);
    CHECK(ffs(0) == 0 && ffs(8) == 4 && ffsl(1L << 40) == 41);

    /* numbers */
    char *end;
    CHECK(strtol("  -123abc", &end, 10) == -123 && strcmp(end, "abc") == 0);
    CHECK(strtol("0x1fZ", &end, 16) == 31 && *end == 'Z');
    CHECK(strtol("0x1f", &end, 0) == 31 && strtol("017", NULL, 0) == 15 && strtol("17", NULL, 0) == 17);
    CHECK(strtol("zz", &end, 36) == 1295 && strtol("101", NULL, 2) == 5);
    CHECK(strtol("xyz", &end, 10) == 0 && strcmp(end, "xyz") == 0);
    CHECK(strtol("0x", &end, 16) == 0 && strcmp(end, "x") == 0);
    errno = 0;
    CHECK(strtol("99999999999999999999", &end, 10) == LONG_MAX && errno == ERANGE && *end == '\0');
    errno = 0;
    CHECK(strtol("-9223372036854775808", NULL, 10) == LONG_MIN && errno == 0);
    CHECK(strtol("-9223372036854775809", NULL, 10) == LONG_MIN && errno == ERANGE);
    errno = 0;
    CHECK(strtoul("18446744073709551615", NULL, 10) == ULONG_MAX && errno == 0);
    CHECK(strtoul("-1", NULL, 10) == ULONG_MAX && errno == 0);
    CHECK(strtoull("18446744073709551616", NULL, 10) == ULLONG_MAX && errno == ERANGE);
    CHECK(strtoll("+42", NULL, 10) == 42 && strtoimax("-7", NULL, 10) == -7);
    CHECK(strtol("1", NULL, 1) == 0 && errno == EINVAL);
    CHECK(atoi("  42xyz") == 42 && atoi("-0") == 0 && atol("123456789012") == 123456789012L);
    CHECK(atoll("-9000000000") == -9000000000LL);
    CHECK(abs(-5) == 5 && labs(-5L) == 5 && llabs(-5LL) == 5 && imaxabs(-3) == 3);
    div_t q = div(17, -5);
    CHECK(q.quot == -3 && q.rem == 2);
    ldiv_t lq = ldiv(-17L, 5L);
    CHECK(lq.quot == -3 && lq.rem == -2);

    /* qsort: random, sorted, reversed, all equal; then bsearch finds each. */
    static int arr[600];
    for (int kind = 0; kind < 4; kind++) {
        int n = kind == 0 ? 600 : 200;
        for (int i = 0; i < n; i++)
            arr[i] = kind == 0 ? next_int() : kind == 1 ? i : kind == 2 ? n - i : 7;
        long sum = 0, sum_after = 0;
        for (int i = 0; i < n; i++)
            sum += arr[i];
        qsort(arr, (size_t)n, sizeof(int), cmp_int);
        int sorted = 1;
        for (int i = 0; i < n; i++) {
            sum_after += arr[i];
            if (i && arr[i - 1] > arr[i])
                sorted = 0;
        }
        CHECK(sorted && sum == sum_after);
        int found = 1;
        for (int i = 0; i < n; i += 7) {
            int *hit = bsearch(&arr[i], arr, (size_t)n, sizeof(int), cmp_int);
            found &= hit && *hit == arr[i];
        }
        CHECK(found);
    }
    int missing = 123456789;
    CHECK(bsearch(&missing, arr, 200, sizeof(int), cmp_int) == NULL);
    const char *words[] = { "pear", "apple", "fig", "banana", "cherry" };
    qsort(words, 5, sizeof(words[0]), cmp_str);
    CHECK(strcmp(words[0], "apple") == 0 && strcmp(words[4], "pear") == 0);
    qsort(NULL, 0, sizeof(int), cmp_int);

    srand(1);
    int r1 = rand(), r2 = rand();
    srand(1);
    CHECK(rand() == r1 && rand() == r2 && r1 >= 0 && r1 <= RAND_MAX && r1 != r2);

    /* getopt */
    char *args[] = { "prog", "-a", "-bvalue", "-c", "arg", "-ab", "x", "--", "-x", "rest", NULL };
    int argc = 10, c, seen_a = 0;
    char opts[64] = "";
    while ((c = getopt(argc, args, "ab:c:")) != -1) {
        size_t len = strlen(opts);
        snprintf(opts + len, sizeof(opts) - len, "%c%s;", c, (c == 'b' || c == 'c') ? optarg : "");
        seen_a += c == 'a';
    }
    CHECK(strcmp(opts, "a;bvalue;carg;a;bx;") == 0);
    CHECK(seen_a == 2 && optind == 8 && strcmp(args[optind], "-x") == 0);

    /* libgen */
    char p1[] = "/usr/lib/", p2[] = "/usr/lib/", p3[] = "file", p4[] = "/";
    CHECK(strcmp(basename(p1), "lib") == 0 && strcmp(dirname(p2), "/usr") == 0);
    CHECK(strcmp(dirname(p3), ".") == 0 && strcmp(basename(p4), "/") == 0);

    /* setjmp */
    volatile int rounds = 0;
    int v = setjmp(jb);
    if (v == 0 || rounds < 3) {
        rounds++;
        jumper(20);
    }
    CHECK(v == 1 && rounds == 3);

    /* ctype, for the test to compare with the host */
    printf("ctype");
    for (int ch = -1; ch < 256; ch++) {
        int bits = !!isalnum(ch) | !!isalpha(ch) << 1 | !!isblank(ch) << 2 | !!iscntrl(ch) << 3 |
                   !!isdigit(ch) << 4 | !!isgraph(ch) << 5 | !!islower(ch) << 6 |
                   !!isprint(ch) << 7 | !!ispunct(ch) << 8 | !!isspace(ch) << 9 |
                   !!isupper(ch) << 10 | !!isxdigit(ch) << 11;
        printf(" %d:%d:%d:%d", ch, bits, tolower(ch), toupper(ch));
    }
    printf("\n");
    return checks_done();
}
