/* errno and the error messages. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

int errno;

static const char *const messages[] = {
    [0] = "Success",
#include "errlist.h"
};

#define NMESSAGES (sizeof(messages) / sizeof(messages[0]))

static const char *message(int err)
{
    return err >= 0 && (unsigned)err < NMESSAGES ? messages[err] : 0;
}

/* "Unknown error N" for numbers without a message, as glibc prints them. */
int strerror_r(int err, char *buf, size_t n)
{
    const char *m = message(err);
    if (!m) {
        snprintf(buf, n, "Unknown error %d", err);
        return EINVAL;
    }
    size_t len = strlen(m);
    if (len >= n) {
        if (n) {
            memcpy(buf, m, n - 1);
            buf[n - 1] = '\0';
        }
        return ERANGE;
    }
    memcpy(buf, m, len + 1);
    return 0;
}

char *strerror(int err)
{
    static char unknown[32];
    const char *m = message(err);
    if (m)
        return (char *)m;
    strerror_r(err, unknown, sizeof(unknown));
    return unknown;
}
