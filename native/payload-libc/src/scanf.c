/*
 * scanf and its relatives: conversions d i u o x X p c s [ n %, with '*',
 * widths and the lengths hh h l ll q j z t L. No floating point: e f g a
 * (any case) are matching failures, so scanning stops there.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct source {
    int (*get)(struct source *);
    void (*unget)(struct source *, int c);
    size_t count;   /* characters consumed, for %n */
    const char *str;
    FILE *f;
};

static int str_get(struct source *s)
{
    return *s->str ? (unsigned char)*s->str++ : EOF;
}

static void str_unget(struct source *s, int c)
{
    (void)c;
    s->str--;
}

static int file_get(struct source *s)
{
    return __krunc_fgetc(s->f);
}

static void file_unget(struct source *s, int c)
{
    __krunc_ungetc(c, s->f);
}

static int next(struct source *s)
{
    int c = s->get(s);
    if (c != EOF)
        s->count++;
    return c;
}

static void back(struct source *s, int c)
{
    if (c != EOF) {
        s->unget(s, c);
        s->count--;
    }
}

enum length { LEN_NONE, LEN_HH, LEN_H, LEN_L, LEN_LL };

static void store_int(void *p, enum length len, uint64_t v)
{
    switch (len) {
    case LEN_HH: *(signed char *)p = (signed char)v; break;
    case LEN_H: *(short *)p = (short)v; break;
    case LEN_L: *(long *)p = (long)v; break;
    case LEN_LL: *(long long *)p = (long long)v; break;
    default: *(int *)p = (int)v; break;
    }
}

static int digit_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 32) >= 'a' && (c | 32) <= 'z')
        return (c | 32) - 'a' + 10;
    return 99;
}

/*
 * Reads an integer's characters (sign, 0x, digits of the base) into buf,
 * at most max of them. Returns the base used, or 0 if no digit came.
 */
static int scan_integer(struct source *s, char *buf, size_t max, int base)
{
    size_t n = 0;
    int digits = 0, c = next(s);

    if ((c == '+' || c == '-') && n < max) {
        buf[n++] = (char)c;
        c = next(s);
    }
    if ((base == 0 || base == 16) && c == '0' && n < max) {
        buf[n++] = (char)c;
        digits = 1;
        c = next(s);
        if ((c | 32) == 'x' && n < max) {
            buf[n++] = (char)c;
            base = 16;
            c = next(s);
        } else if (base == 0) {
            base = 8;
        }
    }
    if (base == 0)
        base = 10;
    while (n < max && c != EOF && digit_value(c) < base) {
        buf[n++] = (char)c;
        digits = 1;
        c = next(s);
    }
    back(s, c);
    buf[n] = '\0';
    return digits ? base : 0;
}

/* Parses a %[...] set into a 256-entry table; returns the format after the ']'. */
static const char *scan_set(const char *fmt, unsigned char *in)
{
    int negate = 0;
    if (*fmt == '^') {
        negate = 1;
        fmt++;
    }
    memset(in, 0, 256);
    if (*fmt == ']') {      /* a leading ']' is a member */
        in[']'] = 1;
        fmt++;
    }
    for (; *fmt && *fmt != ']'; fmt++) {
        unsigned char lo = (unsigned char)*fmt;
        if (fmt[1] == '-' && fmt[2] && fmt[2] != ']') {
            unsigned char hi = (unsigned char)fmt[2];
            for (unsigned c = lo; c <= hi; c++)
                in[c] = 1;
            fmt += 2;
        } else {
            in[lo] = 1;
        }
    }
    if (*fmt == ']')
        fmt++;
    if (negate)
        for (int c = 0; c < 256; c++)
            in[c] = !in[c];
    return fmt;
}

static int vscan(struct source *s, const char *fmt, va_list ap)
{
    int assigned = 0, converted_any = 0;

    while (*fmt) {
        if (isspace((unsigned char)*fmt)) {
            int c;
            while ((c = next(s)) != EOF && isspace(c))
                ;
            back(s, c);
            fmt++;
            continue;
        }
        if (*fmt != '%' || fmt[1] == '%') {
            int want = (unsigned char)*fmt, c;
            if (*fmt == '%') {  /* "%%" matches a '%' after optional space */
                fmt++;
                while ((c = next(s)) != EOF && isspace(c))
                    ;
            } else {
                c = next(s);
            }
            fmt++;
            if (c != want) {
                back(s, c);
                return c == EOF && !converted_any ? EOF : assigned;
            }
            continue;
        }
        fmt++;
        int suppress = 0;
        size_t width = 0;
        enum length len = LEN_NONE;
        if (*fmt == '*') {
            suppress = 1;
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (size_t)(*fmt++ - '0');
        switch (*fmt) {
        case 'h':
            len = fmt[1] == 'h' ? LEN_HH : LEN_H;
            fmt += len == LEN_HH ? 2 : 1;
            break;
        case 'l':
            len = fmt[1] == 'l' ? LEN_LL : LEN_L;
            fmt += len == LEN_LL ? 2 : 1;
            break;
        case 'q': case 'L': len = LEN_LL; fmt++; break;
        case 'j': case 'z': case 't': len = LEN_L; fmt++; break;
        }
        char conv = *fmt;
        if (!conv)
            break;
        fmt++;

        if (conv != '[' && conv != 'c' && conv != 'n') {
            int c;
            while ((c = next(s)) != EOF && isspace(c))
                ;
            if (c == EOF)
                return converted_any ? assigned : EOF;
            back(s, c);
        }
        switch (conv) {
        case 'd': case 'i': case 'u': case 'o': case 'x': case 'X': case 'p': {
            char buf[72];
            int base = conv == 'd' || conv == 'u' ? 10 : conv == 'i' ? 0 : conv == 'o' ? 8 : 16;
            size_t max = width && width < sizeof(buf) - 1 ? width : sizeof(buf) - 1;
            base = scan_integer(s, buf, max, base);
            if (!base)
                return assigned;
            converted_any = 1;
            if (suppress)
                break;
            void *p = va_arg(ap, void *);
            if (conv == 'p')
                *(void **)p = (void *)(uintptr_t)strtoull(buf, 0, 16);
            else if (conv == 'd' || conv == 'i')
                store_int(p, len, (uint64_t)strtoll(buf, 0, base));
            else
                store_int(p, len, strtoull(buf, 0, base));
            assigned++;
            break;
        }
        case 's': case 'c': case '[': {
            unsigned char set[256];
            if (conv == '[')
                fmt = scan_set(fmt, set);
            size_t max = width ? width : conv == 'c' ? 1 : SIZE_MAX, n = 0;
            char *out = suppress ? 0 : va_arg(ap, char *);
            int c = EOF;
            while (n < max && (c = next(s)) != EOF) {
                if ((conv == 's' && isspace(c)) || (conv == '[' && !set[c])) {
                    back(s, c);
                    break;
                }
                if (out)
                    out[n] = (char)c;
                n++;
            }
            if (n == 0 || (conv == 'c' && n < max))
                return c == EOF && !converted_any ? EOF : assigned;
            if (out && conv != 'c')
                out[n] = '\0';
            converted_any = 1;
            if (out)
                assigned++;
            break;
        }
        case 'n':
            if (!suppress)
                store_int(va_arg(ap, void *), len, s->count);
            break;
        default:    /* floating point, or unknown: a matching failure */
            return assigned;
        }
    }
    return assigned;
}

int vsscanf(const char *__krunc_restrict str, const char *__krunc_restrict fmt, va_list ap)
{
    struct source s = { str_get, str_unget, 0, str, 0 };
    return vscan(&s, fmt, ap);
}

int vfscanf(FILE *__krunc_restrict f, const char *__krunc_restrict fmt, va_list ap)
{
    struct source s = { file_get, file_unget, 0, 0, f };
    return vscan(&s, fmt, ap);
}

int vscanf(const char *__krunc_restrict fmt, va_list ap)
{
    return vfscanf(stdin, fmt, ap);
}

int sscanf(const char *__krunc_restrict str, const char *__krunc_restrict fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsscanf(str, fmt, ap);
    va_end(ap);
    return r;
}

int fscanf(FILE *__krunc_restrict f, const char *__krunc_restrict fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfscanf(f, fmt, ap);
    va_end(ap);
    return r;
}

int scanf(const char *__krunc_restrict fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vscanf(fmt, ap);
    va_end(ap);
    return r;
}
