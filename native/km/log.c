/*
 * KM's own messages (errors, fault reports, the --verbose trace), which are
 * kept apart from the payload's own stdout/stderr. Where they go, as with
 * Kontain's KM:
 *
 *   --km-log-to=FILE     appended to FILE
 *   --km-log-to=stderr   KM's stderr (a private copy once the guest runs, so
 *                        a payload closing fd 2 does not silence KM)
 *   --km-log-to=none     nowhere
 *   (default)            stderr if it is a terminal, else /tmp/km_<pid>.log,
 *                        opened at the first message so that quiet runs
 *                        leave no file behind; lost if it cannot be opened
 *
 * Usage errors, --help and --version are not log messages: they always go
 * to stderr/stdout, before the log exists.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "km.h"

#define LOG_NONE    (-1)

const char *km_strerror(int err)
{
    /* Lower-case the first letter so messages read "x: no such file ...". */
    static char buf[128];
    snprintf(buf, sizeof(buf), "%s", strerror(err));
    if (buf[0] >= 'A' && buf[0] <= 'Z')
        buf[0] = (char)(buf[0] - 'A' + 'a');
    return buf;
}

/* Moves fd to KM's private range (close-on-exec); returns the new number. */
int km_hide_fd(const struct km *km, int fd)
{
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, km->fd_floor);
    if (moved < 0)
        return fd;
    close(fd);
    return moved;
}

int km_log_setup(struct km *km)
{
    const char *to = km->opt.log_path;

    km->log_fd = LOG_NONE;
    km->log_deferred = false;
    if (!to) {
        if (isatty(2))
            km->log_fd = 2;
        else
            km->log_deferred = true;
    } else if (strcmp(to, "stderr") == 0) {
        km->log_fd = 2;
    } else if (strcmp(to, "none") != 0) {
        /* Absolute, so a KM re-executed by the payload's execve (exec.c) finds it again. */
        static char abs_path[PATH_MAX];
        if (to[0] != '/' && getcwd(abs_path, sizeof(abs_path)) &&
            strlen(abs_path) + 1 + strlen(to) < sizeof(abs_path)) {
            strcat(strcat(abs_path, "/"), to);
            km->opt.log_path = to = abs_path;
        }
        int fd = open(to, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            /* The one KM message that cannot go to the log. */
            dprintf(2, "km: %s: cannot open log file: %s\n", to, km_strerror(errno));
            return KM_EXIT_SETUP;
        }
        km->log_fd = km_hide_fd(km, fd);
    }
    return 0;
}

/* Called once the guest shares the fd table: fd 2 becomes the guest's. */
void km_log_private(struct km *km)
{
    if (km->log_fd == 2)
        km->log_fd = fcntl(2, F_DUPFD_CLOEXEC, km->fd_floor);
}

/* The default log file, created on first use; O_NOFOLLOW because /tmp is shared. */
static void open_deferred_log(struct km *km)
{
    char path[64];

    km->log_deferred = false;
    snprintf(path, sizeof(path), "/tmp/km_%d.log", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
    km->log_fd = fd < 0 ? LOG_NONE : km_hide_fd(km, fd);
}

/* Set while KM writes its own messages: see signal.c. */
volatile sig_atomic_t km_writing_log;

static void write_all(int fd, const char *buf, size_t len)
{
    /* A closed pipe must cost KM its message, not the payload a SIGPIPE. */
    km_writing_log = 1;
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        buf += n;
        len -= (size_t)n;
    }
    km_writing_log = 0;
}

/* One write per message so concurrent writers never interleave lines. */
static void vmessage(struct km *km, const char *fmt, va_list ap)
{
    char buf[1024];

    if (km->log_deferred)
        open_deferred_log(km);
    if (km->log_fd < 0)
        return;
    int n = snprintf(buf, sizeof(buf), "km: ");
    n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    if (n > (int)sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    write_all(km->log_fd, buf, (size_t)n);
}

void km_err(struct km *km, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(km, fmt, ap);
    va_end(ap);
}

void km_trace(struct km *km, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(km, fmt, ap);
    va_end(ap);
}
