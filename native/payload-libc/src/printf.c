/*
 * printf's formatting engine and the string-producing members of the
 * family. Conversions: d i u o x X c s p n m %, flags - + space # 0 ',
 * width and precision (also as *), lengths hh h l ll q j z t L.
 *
 * No floating point: the library is built -mgeneral-regs-only, and so must
 * payloads be, and then gcc passes a variadic double in memory rather than
 * in %xmm0. So %f %F %e %E %g %G %a %A consume that 8-byte slot (16 bytes
 * for L) from the va_list's stack area, keeping later arguments in place,
 * and print "?" (padded to the width). Positional arguments (%1$d) are not
 * supported: the conversion is printed as it stands.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FL_LEFT  0x01
#define FL_PLUS  0x02
#define FL_SPACE 0x04
#define FL_ALT   0x08
#define FL_ZERO  0x10

enum length { LEN_NONE, LEN_HH, LEN_H, LEN_L, LEN_LL, LEN_J, LEN_Z, LEN_T, LEN_BIG_L };

/* The x86-64 psABI's va_list element, to step over a double without touching it. */
struct va_tag {
    unsigned int gp_offset, fp_offset;
    char *overflow_arg_area;
    char *reg_save_area;
};

static void emit(struct __krunc_sink *s, const char *p, size_t n)
{
    if (n) {
        s->out(s, p, n);
        s->count += n;
    }
}

static void pad(struct __krunc_sink *s, char c, size_t n)
{
    char buf[32];
    memset(buf, c, sizeof(buf));
    while (n) {
        size_t k = n < sizeof(buf) ? n : sizeof(buf);
        emit(s, buf, k);
        n -= k;
    }
}

/* A string field: width and justification, no precision (already applied). */
static void field(struct __krunc_sink *s, const char *p, size_t n, int width, int flags)
{
    size_t w = width > 0 ? (size_t)width : 0;
    if (!(flags & FL_LEFT) && w > n)
        pad(s, ' ', w - n);
    emit(s, p, n);
    if ((flags & FL_LEFT) && w > n)
        pad(s, ' ', w - n);
}

/*
 * An integer: [sign or 0x][zeros to precision][digits], then width.
 * prec < 0 means none given.
 */
static void integer(struct __krunc_sink *s, uint64_t v, int neg, int base, int upper,
                    int is_signed, int flags, int width, int prec)
{
    char digits[24], prefix[2];
    const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t nd = 0, np = 0, zeros = 0;

    for (uint64_t x = v; x; x /= (unsigned)base)
        digits[sizeof(digits) - 1 - nd++] = set[x % (unsigned)base];
    if (v == 0 && prec != 0)
        digits[sizeof(digits) - 1 - nd++] = '0';
    /* '#' with o: the first digit is a 0, even for a zero value with precision 0. */
    if ((flags & FL_ALT) && base == 8 && (nd == 0 || digits[sizeof(digits) - nd] != '0') &&
        prec <= (int)nd)
        prec = (int)nd + 1;
    if (prec > (int)nd)
        zeros = (size_t)prec - nd;
    if (is_signed) {
        if (neg)
            prefix[np++] = '-';
        else if (flags & FL_PLUS)
            prefix[np++] = '+';
        else if (flags & FL_SPACE)
            prefix[np++] = ' ';
    } else if ((flags & FL_ALT) && base == 16 && v != 0) {
        prefix[np++] = '0';
        prefix[np++] = upper ? 'X' : 'x';
    }
    size_t len = np + zeros + nd, w = width > 0 ? (size_t)width : 0;
    if (w > len && !(flags & FL_LEFT)) {
        if ((flags & FL_ZERO) && prec < 0) {
            zeros += w - len;
        } else {
            pad(s, ' ', w - len);
        }
        len = w;
    }
    emit(s, prefix, np);
    pad(s, '0', zeros);
    emit(s, digits + sizeof(digits) - nd, nd);
    if (w > len)
        pad(s, ' ', w - len);
}

static void store_count(void *p, enum length len, size_t count)
{
    switch (len) {
    case LEN_HH: *(signed char *)p = (signed char)count; break;
    case LEN_H: *(short *)p = (short)count; break;
    case LEN_L: case LEN_J: case LEN_Z: case LEN_T: *(long *)p = (long)count; break;
    case LEN_LL: *(long long *)p = (long long)count; break;
    default: *(int *)p = (int)count; break;
    }
}

int __krunc_vformat(struct __krunc_sink *s, const char *fmt, va_list ap)
{
    int saved_errno = errno;

    while (*fmt) {
        if (*fmt != '%') {
            const char *start = fmt;
            while (*fmt && *fmt != '%')
                fmt++;
            emit(s, start, (size_t)(fmt - start));
            continue;
        }
        const char *spec = fmt++;
        int flags = 0, width = 0, prec = -1;
        enum length len = LEN_NONE;

        for (;; fmt++) {
            if (*fmt == '-') flags |= FL_LEFT;
            else if (*fmt == '+') flags |= FL_PLUS;
            else if (*fmt == ' ') flags |= FL_SPACE;
            else if (*fmt == '#') flags |= FL_ALT;
            else if (*fmt == '0') flags |= FL_ZERO;
            else if (*fmt == '\'') ;    /* grouping: none in the "C" locale */
            else break;
        }
        if (*fmt == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                flags |= FL_LEFT;
                width = width == INT_MIN ? INT_MAX : -width;
            }
            fmt++;
        } else {
            for (; *fmt >= '0' && *fmt <= '9'; fmt++)
                width = width > (INT_MAX - 9) / 10 ? INT_MAX : width * 10 + (*fmt - '0');
        }
        if (*fmt == '.') {
            fmt++;
            prec = 0;
            if (*fmt == '*') {
                prec = va_arg(ap, int);
                if (prec < 0)
                    prec = -1;      /* as if none were given */
                fmt++;
            } else {
                for (; *fmt >= '0' && *fmt <= '9'; fmt++)
                    prec = prec > (INT_MAX - 9) / 10 ? INT_MAX : prec * 10 + (*fmt - '0');
            }
        }
        switch (*fmt) {
        case 'h':
            len = fmt[1] == 'h' ? LEN_HH : LEN_H;
            fmt += len == LEN_HH ? 2 : 1;
            break;
        case 'l':
            len = fmt[1] == 'l' ? LEN_LL : LEN_L;
            fmt += len == LEN_LL ? 2 : 1;
            break;
        case 'q': len = LEN_LL; fmt++; break;
        case 'j': len = LEN_J; fmt++; break;
        case 'z': case 'Z': len = LEN_Z; fmt++; break;
        case 't': len = LEN_T; fmt++; break;
        case 'L': len = LEN_BIG_L; fmt++; break;
        }

        char c = *fmt;
        if (c)
            fmt++;
        switch (c) {
        case 'd':
        case 'i': {
            int64_t v;
            switch (len) {
            case LEN_HH: v = (signed char)va_arg(ap, int); break;
            case LEN_H: v = (short)va_arg(ap, int); break;
            case LEN_L: case LEN_J: case LEN_Z: case LEN_T: v = va_arg(ap, long); break;
            case LEN_LL: case LEN_BIG_L: v = va_arg(ap, long long); break;
            default: v = va_arg(ap, int); break;
            }
            integer(s, v < 0 ? -(uint64_t)v : (uint64_t)v, v < 0, 10, 0, 1, flags, width, prec);
            break;
        }
        case 'u':
        case 'o':
        case 'x':
        case 'X': {
            uint64_t v;
            switch (len) {
            case LEN_HH: v = (unsigned char)va_arg(ap, unsigned int); break;
            case LEN_H: v = (unsigned short)va_arg(ap, unsigned int); break;
            case LEN_L: case LEN_J: case LEN_Z: case LEN_T: v = va_arg(ap, unsigned long); break;
            case LEN_LL: case LEN_BIG_L: v = va_arg(ap, unsigned long long); break;
            default: v = va_arg(ap, unsigned int); break;
            }
            integer(s, v, 0, c == 'u' ? 10 : c == 'o' ? 8 : 16, c == 'X', 0, flags, width, prec);
            break;
        }
        case 'p': {
            void *p = va_arg(ap, void *);
            if (!p)
                field(s, "(nil)", 5, width, flags);
            else    /* glibc's %p: %#lx, keeping the other flags */
                integer(s, (uintptr_t)p, 0, 16, 0, 0, flags | FL_ALT, width, prec);
            break;
        }
        case 'c': {
            char ch = (char)va_arg(ap, int);
            field(s, &ch, 1, width, flags);
            break;
        }
        case 's':
            if (len == LEN_L) {     /* a wide string: ASCII passes, the rest shows as '?' */
                const int *ws = va_arg(ap, const int *);
                char narrow[256];
                size_t n = 0;
                if (!ws) {
                    field(s, "(null)", prec < 0 || prec >= 6 ? 6 : 0, width, flags);
                    break;
                }
                while (ws[n] && n < sizeof(narrow) && (prec < 0 || n < (size_t)prec)) {
                    narrow[n] = ws[n] > 0 && ws[n] < 128 ? (char)ws[n] : '?';
                    n++;
                }
                field(s, narrow, n, width, flags);
                break;
            }
            /* fall through */
        case 'm': {
            const char *str = c == 'm' ? strerror(saved_errno) : va_arg(ap, const char *);
            if (!str)   /* glibc prints "(null)", or nothing if the precision cuts it */
                str = prec < 0 || prec >= 6 ? "(null)" : "";
            size_t n = prec < 0 ? strlen(str) : strnlen(str, (size_t)prec);
            field(s, str, n, width, flags);
            break;
        }
        case 'n':
            store_count(va_arg(ap, void *), len, s->count);
            break;
        case '%':
            emit(s, "%", 1);
            break;
        case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': case 'a': case 'A': {
            struct va_tag *va = (struct va_tag *)ap;
            if (len == LEN_BIG_L)
                va->overflow_arg_area = (char *)(((uintptr_t)va->overflow_arg_area + 15) & ~(uintptr_t)15) + 16;
            else
                va->overflow_arg_area += 8;
            field(s, "?", 1, width, flags & FL_LEFT);
            break;
        }
        default:
            /* Unknown, incomplete or positional: print it as written. */
            emit(s, spec, (size_t)(fmt - spec));
            break;
        }
    }
    return s->error ? -1 : s->count > INT_MAX ? (errno = EOVERFLOW, -1) : (int)s->count;
}

/* ---- into a buffer -------------------------------------------------------- */

struct buf_sink {
    struct __krunc_sink s;
    char *buf;
    size_t room;    /* bytes that may still be stored, keeping one for the NUL */
};

static void buf_out(struct __krunc_sink *s, const char *p, size_t n)
{
    struct buf_sink *b = (struct buf_sink *)s;
    size_t k = n < b->room ? n : b->room;
    memcpy(b->buf, p, k);
    b->buf += k;
    b->room -= k;
}

int vsnprintf(char *__krunc_restrict str, size_t n, const char *__krunc_restrict fmt, va_list ap)
{
    struct buf_sink b = { { buf_out, 0, 0 }, str, n ? n - 1 : 0 };
    int r = __krunc_vformat(&b.s, fmt, ap);
    if (n)
        *b.buf = '\0';
    return r;
}

int vsprintf(char *__krunc_restrict str, const char *__krunc_restrict fmt, va_list ap)
{
    return vsnprintf(str, (size_t)INT_MAX + 1, fmt, ap);
}

int snprintf(char *__krunc_restrict str, size_t n, const char *__krunc_restrict fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(str, n, fmt, ap);
    va_end(ap);
    return r;
}

int sprintf(char *__krunc_restrict str, const char *__krunc_restrict fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsprintf(str, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- into a growing allocation -------------------------------------------- */

struct alloc_sink {
    struct __krunc_sink s;
    char *buf;
    size_t len, cap;
};

static void alloc_out(struct __krunc_sink *s, const char *p, size_t n)
{
    struct alloc_sink *a = (struct alloc_sink *)s;
    if (s->error)
        return;
    if (a->len + n + 1 > a->cap) {
        size_t cap = a->cap ? a->cap : 64;
        while (cap < a->len + n + 1)
            cap *= 2;
        char *nb = realloc(a->buf, cap);
        if (!nb) {
            s->error = 1;
            return;
        }
        a->buf = nb;
        a->cap = cap;
    }
    memcpy(a->buf + a->len, p, n);
    a->len += n;
}

int vasprintf(char **__krunc_restrict out, const char *__krunc_restrict fmt, va_list ap)
{
    struct alloc_sink a = { { alloc_out, 0, 0 }, 0, 0, 0 };
    alloc_out(&a.s, "", 0);     /* an empty result is still a string */
    int r = __krunc_vformat(&a.s, fmt, ap);
    if (r < 0 || !a.buf) {
        free(a.buf);
        *out = 0;
        return -1;
    }
    a.buf[a.len] = '\0';
    *out = a.buf;
    return r;
}

int asprintf(char **__krunc_restrict out, const char *__krunc_restrict fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(out, fmt, ap);
    va_end(ap);
    return r;
}
