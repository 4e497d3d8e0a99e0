/* The runtime's out-of-line part: start, exit, strings, formatting. */
#include "km_rt.h"

__attribute__((noreturn)) void rt_exit(int code)
{
    HC1(__NR_exit_group, code);
    for (;;)
        __asm__ volatile("ud2");        /* unreachable: KM never resumes after exit */
}

__attribute__((noreturn, used)) void rt_start(uint64_t *sp)
{
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    rt_exit(main(argc, argv, envp));
}

long rt_signal(int sig, void *handler, unsigned long flags, uint64_t mask)
{
    struct rt_sigaction sa = {
        .handler = handler, .flags = flags | SA_SIGINFO | SA_RESTORER,
        .restorer = rt_restore, .mask = mask,
    };
    return rt_sigaction(sig, &sa, 0);
}

/* The compiler may emit calls to these even in freestanding code. */
void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s)
        return memcpy(dst, src, n);
    while (n--)
        d[n] = s[n];
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n--; x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

size_t rt_strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int rt_strncmp(const char *a, const char *b, size_t n)
{
    for (; n && *a && *a == *b; n--, a++, b++)
        ;
    return n ? (unsigned char)*a - (unsigned char)*b : 0;
}

int rt_strcmp(const char *a, const char *b)
{
    return rt_strncmp(a, b, (size_t)-1);
}

int rt_parse_long(const char *s, long *out)
{
    int neg = *s == '-';
    long v = 0;

    s += neg || *s == '+';
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

const char *rt_errname(long err)
{
    static const char *const names[] = {
        [EPERM] = "EPERM", [ENOENT] = "ENOENT", [EINTR] = "EINTR", [EIO] = "EIO",
        [EBADF] = "EBADF", [ENOMEM] = "ENOMEM", [EACCES] = "EACCES", [EFAULT] = "EFAULT",
        [EEXIST] = "EEXIST", [ENOTDIR] = "ENOTDIR", [EISDIR] = "EISDIR", [EINVAL] = "EINVAL",
        [ENOTTY] = "ENOTTY", [ENOSPC] = "ENOSPC", [ERANGE] = "ERANGE", [ENOSYS] = "ENOSYS",
        [ENAMETOOLONG] = "ENAMETOOLONG", [EOPNOTSUPP] = "ENOTSUP", [EROFS] = "EROFS",
        [ENOEXEC] = "ENOEXEC", [E2BIG] = "E2BIG", [ELIBBAD] = "ELIBBAD", [EAGAIN] = "EAGAIN",
    };
    long e = -err;
    if (e > 0 && e < (long)(sizeof(names) / sizeof(names[0])) && names[e])
        return names[e];
    return err >= 0 ? "OK" : "E?";
}

struct out {
    char *buf;
    size_t size, len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_unsigned(struct out *o, uint64_t v, unsigned base)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (n--)
        put(o, digits[n]);
}

int rt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0 };

    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        int longs = 0;
        while (*++fmt == 'l')
            longs++;
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            for (s = s ? s : "(null)"; *s; s++)
                put(&o, *s);
            break;
        }
        case 'c':
            put(&o, (char)va_arg(ap, int));
            break;
        case 'd': {
            int64_t v = longs ? va_arg(ap, long) : va_arg(ap, int);
            if (v < 0)
                put(&o, '-');
            put_unsigned(&o, v < 0 ? -(uint64_t)v : (uint64_t)v, 10);
            break;
        }
        case 'u':
        case 'x':
            put_unsigned(&o, longs ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int),
                         *fmt == 'u' ? 10 : 16);
            break;
        case 'p':
            put(&o, '0');
            put(&o, 'x');
            put_unsigned(&o, (uint64_t)va_arg(ap, void *), 16);
            break;
        case '%':
            put(&o, '%');
            break;
        default:
            return -1;
        }
    }
    if (size)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return (int)o.len;
}

int rt_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = rt_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int rt_dprintf(int fd, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = rt_vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return n;
    if (n >= (int)sizeof(buf))
        n = sizeof(buf) - 1;
    return (int)rt_write(fd, buf, (size_t)n);
}
