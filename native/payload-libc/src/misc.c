/* The small rest: the "C" locale, sched_yield, <err.h>, realpath. */
#include <err.h>
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

char *setlocale(int category, const char *name)
{
    if (category < LC_CTYPE || category > LC_ALL) {
        errno = EINVAL;
        return 0;
    }
    if (!name || !*name || strcmp(name, "C") == 0 || strcmp(name, "POSIX") == 0)
        return "C";
    return 0;
}

struct lconv *localeconv(void)
{
    /* CHAR_MAX: "not available in this locale", as C specifies for "C". */
    static struct lconv c = {
        ".", "", "", "", "", "", "", "", "", "",
        CHAR_MAX, CHAR_MAX, CHAR_MAX, CHAR_MAX, CHAR_MAX, CHAR_MAX, CHAR_MAX, CHAR_MAX,
        CHAR_MAX, CHAR_MAX, CHAR_MAX, CHAR_MAX, CHAR_MAX, CHAR_MAX,
    };
    return &c;
}

int sched_yield(void)
{
    return (int)SYS0(NR_sched_yield);
}

/* ---- <err.h> -------------------------------------------------------------- */

static void report(int with_errno, const char *fmt, va_list ap)
{
    int saved = errno;
    fprintf(stderr, "%s: ", program_invocation_short_name);
    if (fmt) {
        vfprintf(stderr, fmt, ap);
        if (with_errno)
            fputs(": ", stderr);
    }
    if (with_errno)
        fputs(strerror(saved), stderr);
    fputc('\n', stderr);
}

void vwarn(const char *fmt, va_list ap) { report(1, fmt, ap); }
void vwarnx(const char *fmt, va_list ap) { report(0, fmt, ap); }

__krunc_noreturn void verr(int status, const char *fmt, va_list ap)
{
    report(1, fmt, ap);
    exit(status);
}

__krunc_noreturn void verrx(int status, const char *fmt, va_list ap)
{
    report(0, fmt, ap);
    exit(status);
}

void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(fmt, ap);
    va_end(ap);
}

void warnx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarnx(fmt, ap);
    va_end(ap);
}

__krunc_noreturn void err(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(status, fmt, ap);
}

__krunc_noreturn void errx(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verrx(status, fmt, ap);
}

/* ---- realpath ------------------------------------------------------------- */

/*
 * The absolute path without ".", ".." or symbolic links; every component
 * must exist. Built component by component in `out`, with links' targets
 * spliced in front of what is left to resolve.
 */
char *realpath(const char *__krunc_restrict path, char *__krunc_restrict resolved)
{
    char out[PATH_MAX], todo[PATH_MAX], link[PATH_MAX];
    size_t len = 0;
    int links = 0;

    if (!path) {
        errno = EINVAL;
        return 0;
    }
    if (!*path) {
        errno = ENOENT;
        return 0;
    }
    if (strlen(path) >= sizeof(todo)) {
        errno = ENAMETOOLONG;
        return 0;
    }
    strcpy(todo, path);
    if (path[0] != '/') {
        if (!getcwd(out, sizeof(out)))
            return 0;
        len = strlen(out);
        if (len == 1)
            len = 0;    /* "/" : components append "/name" */
    }
    char *rest = todo;
    while (*rest) {
        while (*rest == '/')
            rest++;
        if (!*rest)
            break;
        char *end = strchrnul(rest, '/');
        size_t n = (size_t)(end - rest);
        if (n == 1 && rest[0] == '.') {
            rest = end;
            continue;
        }
        if (n == 2 && rest[0] == '.' && rest[1] == '.') {
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0)
                len--;      /* the slash too; at the root, stay there */
            rest = end;
            continue;
        }
        if (len + 1 + n >= sizeof(out)) {
            errno = ENAMETOOLONG;
            return 0;
        }
        out[len] = '/';
        memcpy(out + len + 1, rest, n);
        out[len + 1 + n] = '\0';
        struct stat st;
        if (lstat(out, &st) < 0)
            return 0;
        if (S_ISLNK(st.st_mode)) {
            if (++links > SYMLOOP_MAX) {
                errno = ELOOP;
                return 0;
            }
            ssize_t k = readlink(out, link, sizeof(link) - 1);
            if (k < 0)
                return 0;
            link[k] = '\0';
            size_t left = strlen(end);
            if ((size_t)k + left + 1 >= sizeof(todo)) {
                errno = ENAMETOOLONG;
                return 0;
            }
            memmove(todo + k, end, left + 1);    /* the rest, after the target */
            memcpy(todo, link, (size_t)k);
            rest = todo;
            if (link[0] == '/')
                len = 0;
            continue;
        }
        if (*end && !S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return 0;
        }
        len += 1 + n;
        rest = end;
    }
    if (len == 0)
        out[len++] = '/';
    out[len] = '\0';
    if (!resolved)
        return strdup(out);
    memcpy(resolved, out, len + 1);
    return resolved;
}
