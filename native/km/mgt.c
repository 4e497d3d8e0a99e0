/*
 * The management socket: snapshots on request from outside (krun
 * checkpoint). --mgt-fd=N takes an inherited listening AF_UNIX stream
 * socket, --mgtpipe=PATH makes one (and unlinks it at exit). One request
 * per connection, in one sendmsg:
 *
 *     "snapshot live=0\n" or "snapshot live=1\n", optionally " label=WORD"
 *     before the newline, with exactly one SCM_RIGHTS descriptor: a
 *     writable regular file (not O_APPEND) the snapshot is written into.
 *
 * KM answers "ok SIZE\n" or "error MESSAGE\n" and closes the connection;
 * after "ok" for live=0 it exits with status 0.
 *
 * A helper thread (all signals blocked, so guest signals still reach the
 * vCPU thread) accepts and checks requests; the snapshot itself is taken by
 * the vCPU thread, which it kicks with KM_SIG_KICK (signal.c): out of
 * KVM_RUN through kvm_run.immediate_exit, or out of a blocking host call,
 * which signal.c restarts so the guest never sees it.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "km.h"

#define MAX_FDS 4

volatile int km_mgt_pending;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct {
    int fd;
    bool live;
    char label[64];
    bool done, replied;
    int rc;
    uint64_t size;
    char err[512];
} req;
static int listen_fd = -1, conn_fd = -1, recv_fds[MAX_FDS] = { -1, -1, -1, -1 };
static const char *bound_path;
static pid_t vcpu_tid;
static bool kick_ready;

bool km_mgt_private_fd(int fd)
{
    if (fd == listen_fd || fd == conn_fd)
        return true;
    for (int i = 0; i < MAX_FDS; i++)
        if (fd == recv_fds[i])
            return true;
    return false;
}

void km_mgt_cleanup(void)
{
    if (bound_path) {
        unlink(bound_path);
        bound_path = NULL;
    }
}

static void cleanup_at_exit(void)
{
    km_mgt_cleanup();
}

static int bind_path(struct km *km, const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        km_err(km, "--mgtpipe=%s: path too long for a socket", path);
        return KM_EXIT_SETUP;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        km_err(km, "--mgtpipe: socket: %s", km_strerror(errno));
        return KM_EXIT_SETUP;
    }
    /* A socket left behind (a killed KM, or ours before execve) is stale. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
        km_err(km, "--mgtpipe=%s: %s", path, km_strerror(errno));
        close(fd);
        return KM_EXIT_SETUP;
    }
    bound_path = path;
    atexit(cleanup_at_exit);
    listen_fd = km_hide_fd(km, fd);
    return 0;
}

static int take_fd(struct km *km, int fd)
{
    struct stat st;
    int listening = 0;
    socklen_t len = sizeof(listening);

    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening) {
        km_err(km, "--mgt-fd=%d: not a listening socket", fd);
        return KM_EXIT_SETUP;
    }
    listen_fd = km_hide_fd(km, fd);     /* the guest never sees it */
    fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
    return 0;
}

int km_mgt_init(struct km *km)
{
    int rc = 0;
    if (km->opt.mgt_fd >= 0)
        rc = take_fd(km, km->opt.mgt_fd);
    else if (km->opt.mgtpipe)
        rc = bind_path(km, km->opt.mgtpipe);
    /* Non-blocking: see mgt_main. (For --mgt-fd this is the parent's socket too.) */
    if (listen_fd >= 0)
        fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
    km->mgt_listen_fd = listen_fd;
    return rc;
}

static void reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(int fd, const char *fmt, ...)
{
    char buf[640];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    for (int i = 0; i < n; i++)         /* one line, whatever the message holds */
        if (buf[i] == '\n')
            buf[i] = ' ';
    buf[n++] = '\n';
    send(fd, buf, (size_t)n, MSG_NOSIGNAL);
}

static bool word_ok(const char *w)
{
    size_t n = strlen(w);
    if (n == 0 || n >= sizeof(req.label))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(w[i] >= 'a' && w[i] <= 'z') && !(w[i] >= 'A' && w[i] <= 'Z') &&
            !(w[i] >= '0' && w[i] <= '9') && !strchr("._-", w[i]))
            return false;
    return true;
}

/* Parses "snapshot live=N[ label=WORD]\n"; NULL or what is wrong. */
static const char *parse(char *text, bool *live, char *label)
{
    size_t n = strlen(text);
    if (n == 0 || text[n - 1] != '\n')
        return "bad request: expected one line ending in a newline";
    text[n - 1] = '\0';
    if (strchr(text, '\n'))
        return "bad request: more than one line";
    char *save, *verb = strtok_r(text, " ", &save);
    if (!verb || strcmp(verb, "snapshot") != 0)
        return "unknown request (expected: snapshot live=0|1 [label=WORD])";
    bool have_live = false;
    label[0] = '\0';
    for (char *t; (t = strtok_r(NULL, " ", &save));) {
        if (strcmp(t, "live=0") == 0 || strcmp(t, "live=1") == 0) {
            *live = t[5] == '1';
            have_live = true;
        } else if (strncmp(t, "label=", 6) == 0 && word_ok(t + 6)) {
            strcpy(label, t + 6);
        } else {
            return "bad request: unknown or malformed argument";
        }
    }
    return have_live ? NULL : "bad request: live=0 or live=1 is required";
}

static const char *check_target(struct km *km, int fd)
{
    struct stat st;
    int fl = fcntl(fd, F_GETFL);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return "the descriptor is not a regular file";
    if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY)
        return "the descriptor is not open for writing";
    if (fl & O_APPEND)
        return "the descriptor is in append mode";
    if (km->snap_ino && st.st_dev == km->snap_dev && st.st_ino == km->snap_ino)
        return "cannot overwrite the snapshot this instance runs from";
    return NULL;
}

/* Hands the request to the vCPU thread and waits for its result. */
static void submit(int fd, bool live, const char *label)
{
    pthread_mutex_lock(&lock);
    req.fd = fd;
    req.live = live;
    snprintf(req.label, sizeof(req.label), "%s", label);
    req.done = req.replied = false;
    __atomic_store_n(&km_mgt_pending, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&lock);
    syscall(SYS_tgkill, getpid(), vcpu_tid, KM_SIG_KICK);
    pthread_mutex_lock(&lock);
    while (!req.done)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
}

static int receive(struct km *km, int c, char *text, size_t size, int *nfds, bool *truncated)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    } cm;
    struct iovec iov = { text, size - 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
                        .msg_controllen = sizeof(cm.b) };
    ssize_t n = recvmsg(c, &m, MSG_CMSG_CLOEXEC);
    *nfds = 0;
    if (n < 0)
        return -1;
    text[n] = '\0';
    *truncated = (m.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && *nfds < MAX_FDS; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(fd));
            recv_fds[(*nfds)++] = km_hide_fd(km, fd);
        }
    }
    return 0;
}

static void serve_connection(struct km *km, int c)
{
    char text[512], label[64];
    struct timeval tv = { .tv_sec = 5 };
    bool live = false, truncated = false;
    int nfds;
    const char *bad;

    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (receive(km, c, text, sizeof(text), &nfds, &truncated) < 0)
        bad = "cannot read the request";
    else if (truncated)
        bad = "bad request: too long, or too many descriptors";
    else if ((bad = parse(text, &live, label)) != NULL)
        ;
    else if (nfds != 1)
        bad = nfds ? "expected exactly one file descriptor, got more" :
                     "expected exactly one file descriptor (SCM_RIGHTS), got none";
    else
        bad = check_target(km, recv_fds[0]);
    if (bad) {
        reply(c, "error %s", bad);
    } else {
        submit(recv_fds[0], live, label);
        if (req.rc == 0)
            reply(c, "ok %llu", (unsigned long long)req.size);
        else
            reply(c, "error %s", req.err);
    }
    for (int i = 0; i < MAX_FDS; i++) {
        if (recv_fds[i] >= 0)
            close(recv_fds[i]);
        recv_fds[i] = -1;
    }
    if (!bad && req.rc == 0 && !req.live) {     /* the vCPU thread exits once we replied */
        shutdown(c, SHUT_RDWR);
        pthread_mutex_lock(&lock);
        req.replied = true;
        pthread_cond_broadcast(&cond);
        pthread_mutex_unlock(&lock);
        for (;;)
            pause();
    }
}

static void *mgt_main(void *arg)
{
    struct km *km = arg;
    uint64_t all = ~0ULL;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, NULL, 8);
    pthread_mutex_lock(&lock);
    while (!kick_ready)                 /* no kick before its handler is there */
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    for (;;) {
        /*
         * poll, then a non-blocking accept: a blocked accept holds the lowest
         * free fd number for the connection to come, which would shift the
         * guest's own numbering (its next open would skip it).
         */
        struct pollfd p = { .fd = listen_fd, .events = POLLIN };
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return NULL;
        if (p.revents & POLLNVAL)
            return NULL;
        int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EBADF || errno == EINVAL || errno == ENOTSOCK)
                return NULL;
            if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN)
                usleep(10000);
            continue;
        }
        conn_fd = km_hide_fd(km, c);
        serve_connection(km, conn_fd);
        close(conn_fd);
        conn_fd = -1;
    }
}

/* Once the guest is set up: the kick handler, then the thread (with every signal blocked). */
int km_mgt_start(struct km *km)
{
    pthread_t t;
    pthread_attr_t attr;
    uint64_t all = ~0ULL, old = 0;

    if (listen_fd < 0)
        return 0;
    vcpu_tid = (pid_t)syscall(SYS_gettid);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, &old, 8);
    int rc = pthread_create(&t, &attr, mgt_main, km);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, 8);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        km_err(km, "cannot start the management thread: %s", km_strerror(rc));
        return KM_EXIT_SETUP;
    }
    /* After pthread_create: glibc takes signal 33 (SIGSETXID) for itself at the first one. */
    rc = km_signals_kick_init(km);
    pthread_mutex_lock(&lock);
    kick_ready = true;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    return rc;
}

/* The vCPU's `out` instruction that made the interrupted hypercall (0xef: outl %eax, %dx). */
static bool rewind_to_out(struct km *km, struct kvm_regs *r)
{
    if (!km_get_regs(km, r))
        return false;
    const uint8_t *p = km_gptr(km, r->rip - 1, 1);
    if (!p)
        p = km_priv_ptr(km, r->rip - 1, 1);
    if (!p || *p != 0xef)
        return false;
    r->rip -= 1;
    return true;
}

void km_mgt_serve(struct km *km, bool rewind)
{
    struct kvm_regs r;
    char err[512] = "";
    uint64_t size = 0;
    int rc;

    if (!__atomic_load_n(&km_mgt_pending, __ATOMIC_SEQ_CST))
        return;
    pthread_mutex_lock(&lock);
    int fd = req.fd;
    bool live = req.live;
    char label[64];
    memcpy(label, req.label, sizeof(label));
    pthread_mutex_unlock(&lock);

    km_vcpu_sync(km);
    if (rewind && !rewind_to_out(km, &r)) {
        rc = -EIO;
        snprintf(err, sizeof(err), "cannot find the interrupted hypercall");
    } else {
        rc = km_snapshot_write(km, fd, rewind ? &r : NULL, label, "", &size, err, sizeof(err));
    }
    if (rc == 0 && fsync(fd) < 0) {
        rc = -errno;
        snprintf(err, sizeof(err), "fsync: %s", km_strerror(errno));
    }
    if (rc < 0)
        km_err(km, "SNAP: %s", err);
    else if (km->trace)
        km_trace(km, "snapshot on request: %llu bytes%s", (unsigned long long)size,
                 live ? ", live" : "; exiting");

    pthread_mutex_lock(&lock);
    req.rc = rc;
    req.size = size;
    snprintf(req.err, sizeof(req.err), "%s", err);
    req.done = true;
    __atomic_store_n(&km_mgt_pending, 0, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&cond);
    bool stop = rc == 0 && !live;
    while (stop && !req.replied)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    if (stop)
        exit(0);
}
