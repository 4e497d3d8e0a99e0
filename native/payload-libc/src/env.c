/*
 * The environment. environ starts as the envp KM put on the stack; the
 * first change copies the array into one from malloc that can grow.
 * Strings replaced or removed are not freed: a caller may still hold a
 * pointer getenv returned (glibc does the same).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char **owned;    /* environ when it is ours */
static size_t owned_cap;

static size_t env_count(void)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    return n;
}

/* Makes environ ours with room for one more entry and the NULL. */
static int make_room(void)
{
    size_t n = env_count();
    if (environ == owned && n + 2 <= owned_cap)
        return 0;
    size_t cap = (n + 2) * 2;
    char **e = malloc(cap * sizeof(*e));
    if (!e)
        return -1;
    if (n)
        memcpy(e, environ, n * sizeof(*e));
    e[n] = 0;
    if (environ == owned)
        free(owned);
    environ = owned = e;
    owned_cap = cap;
    return 0;
}

static int bad_name(const char *name)
{
    if (!name || !*name || strchr(name, '=')) {
        errno = EINVAL;
        return 1;
    }
    return 0;
}

static long find(const char *name, size_t len)
{
    for (size_t i = 0; environ && environ[i]; i++)
        if (strncmp(environ[i], name, len) == 0 && environ[i][len] == '=')
            return (long)i;
    return -1;
}

char *getenv(const char *name)
{
    size_t len = strlen(name);
    long i = find(name, len);
    return i < 0 ? 0 : environ[i] + len + 1;
}

/* Puts "name=value" (kv, kept as is) in place of name's entry, or at the end. */
static int put(char *kv, size_t name_len)
{
    if (make_room() < 0)
        return -1;
    long i = find(kv, name_len);
    if (i >= 0) {
        environ[i] = kv;
    } else {
        size_t n = env_count();
        environ[n] = kv;
        environ[n + 1] = 0;
    }
    return 0;
}

int setenv(const char *name, const char *value, int overwrite)
{
    if (bad_name(name))
        return -1;
    size_t len = strlen(name), vlen = strlen(value);
    if (!overwrite && find(name, len) >= 0)
        return 0;
    char *kv = malloc(len + vlen + 2);
    if (!kv)
        return -1;
    memcpy(kv, name, len);
    kv[len] = '=';
    memcpy(kv + len + 1, value, vlen + 1);
    if (put(kv, len) < 0) {
        free(kv);
        return -1;
    }
    return 0;
}

int unsetenv(const char *name)
{
    if (bad_name(name))
        return -1;
    size_t len = strlen(name);
    long i;
    while ((i = find(name, len)) >= 0) {
        if (make_room() < 0)
            return -1;
        size_t n = env_count();
        memmove(environ + i, environ + i + 1, (n - (size_t)i) * sizeof(*environ));
    }
    return 0;
}

/* The string itself becomes the entry; without '=' it removes the name (glibc's reading). */
int putenv(char *kv)
{
    char *eq = strchr(kv, '=');
    if (!eq)
        return unsetenv(kv);
    if (eq == kv) {
        errno = EINVAL;
        return -1;
    }
    return put(kv, (size_t)(eq - kv));
}

int clearenv(void)
{
    if (make_room() < 0)
        return -1;
    environ[0] = 0;
    return 0;
}
