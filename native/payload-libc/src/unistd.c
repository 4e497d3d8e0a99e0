/*
 * The POSIX calls that are one hypercall each (same number and arguments
 * as the Linux syscall), plus the few built from them.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

ssize_t read(int fd, void *buf, size_t n) { return SYS3(NR_read, fd, buf, n); }
ssize_t write(int fd, const void *buf, size_t n) { return SYS3(NR_write, fd, buf, n); }
ssize_t pread(int fd, void *buf, size_t n, off_t off) { return SYS4(NR_pread64, fd, buf, n, off); }
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return SYS4(NR_pwrite64, fd, buf, n, off);
}
ssize_t readv(int fd, const struct iovec *iov, int n) { return SYS3(NR_readv, fd, iov, n); }
ssize_t writev(int fd, const struct iovec *iov, int n) { return SYS3(NR_writev, fd, iov, n); }
int close(int fd) { return (int)SYS1(NR_close, fd); }
off_t lseek(int fd, off_t off, int whence) { return SYS3(NR_lseek, fd, off, whence); }
int dup(int fd) { return (int)SYS1(NR_dup, fd); }
int dup2(int fd, int to) { return (int)SYS2(NR_dup2, fd, to); }
int dup3(int fd, int to, int flags) { return (int)SYS3(NR_dup3, fd, to, flags); }
int pipe(int fds[2]) { return (int)SYS1(NR_pipe, fds); }
int pipe2(int fds[2], int flags) { return (int)SYS2(NR_pipe2, fds, flags); }
int fsync(int fd) { return (int)SYS1(NR_fsync, fd); }
/* KM has no fdatasync; fsync does at least as much. */
int fdatasync(int fd) { return fsync(fd); }
int ftruncate(int fd, off_t len) { return (int)SYS2(NR_ftruncate, fd, len); }

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return (int)SYS3(NR_open, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return (int)SYS4(NR_openat, dirfd, path, flags, mode);
}

int creat(const char *path, mode_t mode)
{
    return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int arg = va_arg(ap, int);     /* every command KM takes has an int (or no) argument */
    va_end(ap);
    return (int)SYS3(NR_fcntl, fd, cmd, arg);
}

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return (int)SYS3(NR_ioctl, fd, request, arg);
}

/* KM answers TIOCGWINSZ for a terminal on fds 0-2 and ENOTTY otherwise. */
int isatty(int fd)
{
    struct winsize ws;
    return ioctl(fd, TIOCGWINSZ, &ws) == 0;
}

int stat(const char *__krunc_restrict path, struct stat *__krunc_restrict st)
{
    return (int)SYS2(NR_stat, path, st);
}
int lstat(const char *__krunc_restrict path, struct stat *__krunc_restrict st)
{
    return (int)SYS2(NR_lstat, path, st);
}
int fstat(int fd, struct stat *st) { return (int)SYS2(NR_fstat, fd, st); }
int fstatat(int dirfd, const char *__krunc_restrict path, struct stat *__krunc_restrict st,
            int flags)
{
    return (int)SYS4(NR_newfstatat, dirfd, path, st, flags);
}
int mkdir(const char *path, mode_t mode) { return (int)SYS2(NR_mkdir, path, mode); }
int mkdirat(int dirfd, const char *path, mode_t mode) { return (int)SYS3(NR_mkdirat, dirfd, path, mode); }
mode_t umask(mode_t mask) { return (mode_t)HC1(NR_umask, mask); }

int access(const char *path, int mode) { return (int)SYS2(NR_access, path, mode); }
int unlink(const char *path) { return (int)SYS1(NR_unlink, path); }
int rmdir(const char *path) { return (int)SYS1(NR_rmdir, path); }
int rename(const char *from, const char *to) { return (int)SYS2(NR_rename, from, to); }
int chdir(const char *path) { return (int)SYS1(NR_chdir, path); }
ssize_t readlink(const char *__krunc_restrict path, char *__krunc_restrict buf, size_t n)
{
    return SYS3(NR_readlink, path, buf, n);
}

/* getcwd(NULL, 0) allocates, as glibc's does. */
char *getcwd(char *buf, size_t size)
{
    char tmp[PATH_MAX];
    char *to = buf ? buf : tmp;
    size_t room = buf ? size : sizeof(tmp);

    if (buf && size == 0) {
        errno = EINVAL;
        return 0;
    }
    if (SYS2(NR_getcwd, to, room) < 0)
        return 0;
    if (!buf) {
        if (size && strlen(tmp) >= size) {
            errno = ERANGE;
            return 0;
        }
        return strdup(tmp);
    }
    return buf;
}

pid_t getpid(void) { return (pid_t)HC0(NR_getpid); }
pid_t getppid(void) { return (pid_t)HC0(NR_getppid); }
pid_t gettid(void) { return (pid_t)HC0(NR_gettid); }
uid_t getuid(void) { return (uid_t)HC0(NR_getuid); }
uid_t geteuid(void) { return (uid_t)HC0(NR_geteuid); }
gid_t getgid(void) { return (gid_t)HC0(NR_getgid); }
gid_t getegid(void) { return (gid_t)HC0(NR_getegid); }

int uname(struct utsname *u) { return (int)SYS1(NR_uname, u); }

int gethostname(char *name, size_t n)
{
    struct utsname u;
    if (uname(&u) < 0)
        return -1;
    size_t len = strlen(u.nodename);
    if (len >= n) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(name, u.nodename, len + 1);
    return 0;
}

ssize_t getrandom(void *buf, size_t n, unsigned int flags)
{
    return SYS3(NR_getrandom, buf, n, flags);
}

/* ---- time ----------------------------------------------------------------- */

int clock_gettime(clockid_t clk, struct timespec *ts) { return (int)SYS2(NR_clock_gettime, clk, ts); }
int clock_getres(clockid_t clk, struct timespec *ts) { return (int)SYS2(NR_clock_getres, clk, ts); }
int nanosleep(const struct timespec *req, struct timespec *rem)
{
    return (int)SYS2(NR_nanosleep, req, rem);
}

/* Returns the error number itself, as POSIX says. */
int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req, struct timespec *rem)
{
    long r = HC4(NR_clock_nanosleep, clk, flags, req, rem);
    return r < 0 ? (int)-r : 0;
}

time_t time(time_t *t)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
        return (time_t)-1;
    if (t)
        *t = ts.tv_sec;
    return ts.tv_sec;
}

int timespec_get(struct timespec *ts, int base)
{
    if (base != TIME_UTC || clock_gettime(CLOCK_REALTIME, ts) < 0)
        return 0;
    return base;
}

clock_t clock(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) < 0)
        return (clock_t)-1;
    return ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int gettimeofday(struct timeval *__krunc_restrict tv, void *__krunc_restrict tz)
{
    struct timespec ts;
    if (tv) {
        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
            return -1;
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    if (tz)
        memset(tz, 0, sizeof(struct timezone));     /* UTC, no DST */
    return 0;
}

int setitimer(int which, const struct itimerval *__krunc_restrict nv,
              struct itimerval *__krunc_restrict old)
{
    return (int)SYS3(NR_setitimer, which, nv, old);
}
int getitimer(int which, struct itimerval *cur) { return (int)SYS2(NR_getitimer, which, cur); }
unsigned int alarm(unsigned int secs) { return (unsigned int)HC1(NR_alarm, secs); }
int pause(void) { return (int)SYS0(NR_pause); }

/* Returns the seconds left when a handled signal cut the sleep short. */
unsigned int sleep(unsigned int secs)
{
    struct timespec ts = { (time_t)secs, 0 };
    if (nanosleep(&ts, &ts) < 0)
        return (unsigned int)ts.tv_sec + (ts.tv_nsec > 0);
    return 0;
}

int usleep(useconds_t usecs)
{
    struct timespec ts = { (time_t)(usecs / 1000000), (long)(usecs % 1000000) * 1000 };
    return nanosleep(&ts, 0);
}

/* ---- memory --------------------------------------------------------------- */

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    long r = HC6(NR_mmap, addr, len, prot, flags, fd, off);
    if ((unsigned long)r > -4096UL) {
        errno = (int)-r;
        return MAP_FAILED;
    }
    return (void *)r;
}
int munmap(void *addr, size_t len) { return (int)SYS2(NR_munmap, addr, len); }
int mprotect(void *addr, size_t len, int prot) { return (int)SYS3(NR_mprotect, addr, len, prot); }
int madvise(void *addr, size_t len, int advice) { return (int)SYS3(NR_madvise, addr, len, advice); }

static unsigned long cur_brk;

/* The kernel's brk returns the (possibly unchanged) break; failure is "did not move". */
int brk(void *end)
{
    unsigned long r = (unsigned long)HC1(NR_brk, end);
    cur_brk = r;
    if (r < (unsigned long)end) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

void *sbrk(long delta)
{
    if (!cur_brk)
        cur_brk = (unsigned long)HC1(NR_brk, 0);
    unsigned long old = cur_brk;
    if (delta == 0)
        return (void *)old;
    if (brk((void *)(old + (unsigned long)delta)) < 0)
        return (void *)-1;
    return (void *)old;
}

int getpagesize(void) { return 4096; }

long sysconf(int name)
{
    switch (name) {
    case _SC_PAGESIZE: return 4096;
    case _SC_CLK_TCK: return 100;
    case _SC_OPEN_MAX: return 1024;
    case _SC_ARG_MAX: return ARG_MAX;
    case _SC_CHILD_MAX: return 0;       /* no fork under KM */
    case _SC_NPROCESSORS_CONF:
    case _SC_NPROCESSORS_ONLN: return 1;  /* KM runs one vCPU */
    default:
        errno = EINVAL;
        return -1;
    }
}

/* Any hypercall by number, the C way (-1 and errno). Numbers past KM's table are ENOSYS. */
long syscall(long nr, ...)
{
    va_list ap;
    long a[6];

    va_start(ap, nr);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (nr < 0 || nr >= KM_HC_MAX) {
        errno = ENOSYS;
        return -1;
    }
    return __sysret(__hc((unsigned int)nr, a[0], a[1], a[2], a[3], a[4], a[5]));
}

/* ---- exec ----------------------------------------------------------------- */

int execve(const char *path, char *const argv[], char *const envp[])
{
    return (int)SYS3(NR_execve, path, argv, envp);
}

int execv(const char *path, char *const argv[])
{
    return execve(path, argv, environ);
}

/* KM does not search PATH, so execvp does, as a libc does. */
int execvp(const char *file, char *const argv[])
{
    char buf[PATH_MAX];
    const char *path = getenv("PATH");
    int saw_eacces = 0;

    if (!*file) {
        errno = ENOENT;
        return -1;
    }
    if (strchr(file, '/'))
        return execv(file, argv);
    if (!path)
        path = "/usr/local/bin:/bin:/usr/bin";
    size_t flen = strlen(file);
    for (const char *p = path;; p++) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t)(end - p);
        if (dlen + 1 + flen < sizeof(buf)) {
            if (dlen == 0) {
                memcpy(buf, file, flen + 1);    /* an empty entry is the cwd */
            } else {
                memcpy(buf, p, dlen);
                buf[dlen] = '/';
                memcpy(buf + dlen + 1, file, flen + 1);
            }
            execv(buf, argv);
            if (errno == EACCES)
                saw_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR)
                return -1;
        }
        if (!*end)
            break;
        p = end;
    }
    if (saw_eacces)
        errno = EACCES;
    return -1;
}
