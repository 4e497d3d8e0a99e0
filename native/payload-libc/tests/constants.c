/*
 * errno and the ABI constants. Prints "NAME=value" for the constants the
 * test compares with the host's (Python's errno, signal, os, stat and mmap
 * modules), then "strerror N=text" for 0..134, then checks real failures
 * set errno as Linux does.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define SHOW(name) printf("%s=%ld\n", #name, (long)(name))

int main(void)
{
    SHOW(EPERM); SHOW(ENOENT); SHOW(ESRCH); SHOW(EINTR); SHOW(EIO); SHOW(EBADF);
    SHOW(EAGAIN); SHOW(EWOULDBLOCK); SHOW(ENOMEM); SHOW(EACCES); SHOW(EFAULT); SHOW(EBUSY);
    SHOW(EEXIST); SHOW(EXDEV); SHOW(ENOTDIR); SHOW(EISDIR); SHOW(EINVAL); SHOW(EMFILE);
    SHOW(ENOTTY); SHOW(EFBIG); SHOW(ENOSPC); SHOW(ESPIPE); SHOW(EROFS); SHOW(EPIPE);
    SHOW(EDOM); SHOW(ERANGE); SHOW(EDEADLK); SHOW(ENAMETOOLONG); SHOW(ENOSYS);
    SHOW(ENOTEMPTY); SHOW(ELOOP); SHOW(EOVERFLOW); SHOW(EILSEQ); SHOW(ENOTSOCK);
    SHOW(EOPNOTSUPP); SHOW(ENOTSUP); SHOW(EADDRINUSE); SHOW(ECONNREFUSED); SHOW(ETIMEDOUT);
    SHOW(EINPROGRESS); SHOW(ESTALE); SHOW(EDQUOT); SHOW(ECANCELED); SHOW(EOWNERDEAD);
    SHOW(ENOTRECOVERABLE); SHOW(ERFKILL); SHOW(EHWPOISON);

    SHOW(SIGHUP); SHOW(SIGINT); SHOW(SIGQUIT); SHOW(SIGILL); SHOW(SIGTRAP); SHOW(SIGABRT);
    SHOW(SIGBUS); SHOW(SIGFPE); SHOW(SIGKILL); SHOW(SIGUSR1); SHOW(SIGSEGV); SHOW(SIGUSR2);
    SHOW(SIGPIPE); SHOW(SIGALRM); SHOW(SIGTERM); SHOW(SIGCHLD); SHOW(SIGCONT); SHOW(SIGSTOP);
    SHOW(SIGTSTP); SHOW(SIGTTIN); SHOW(SIGTTOU); SHOW(SIGURG); SHOW(SIGXCPU); SHOW(SIGXFSZ);
    SHOW(SIGVTALRM); SHOW(SIGPROF); SHOW(SIGWINCH); SHOW(SIGIO); SHOW(SIGPWR); SHOW(SIGSYS);
    SHOW(SIG_BLOCK); SHOW(SIG_UNBLOCK); SHOW(SIG_SETMASK);
    SHOW(SA_SIGINFO); SHOW(SA_RESTART); SHOW(SA_NODEFER); SHOW(SA_RESETHAND); SHOW(SA_ONSTACK);

    SHOW(O_RDONLY); SHOW(O_WRONLY); SHOW(O_RDWR); SHOW(O_CREAT); SHOW(O_EXCL); SHOW(O_NOCTTY);
    SHOW(O_TRUNC); SHOW(O_APPEND); SHOW(O_NONBLOCK); SHOW(O_DSYNC); SHOW(O_DIRECTORY);
    SHOW(O_NOFOLLOW); SHOW(O_CLOEXEC); SHOW(O_SYNC); SHOW(O_PATH); SHOW(O_TMPFILE);
    SHOW(O_ASYNC); SHOW(O_DIRECT); SHOW(O_NOATIME);
    SHOW(F_DUPFD); SHOW(F_GETFD); SHOW(F_SETFD); SHOW(F_GETFL); SHOW(F_SETFL);
    SHOW(F_DUPFD_CLOEXEC); SHOW(FD_CLOEXEC);
    SHOW(SEEK_SET); SHOW(SEEK_CUR); SHOW(SEEK_END);
    SHOW(F_OK); SHOW(R_OK); SHOW(W_OK); SHOW(X_OK);
    SHOW(S_IFMT); SHOW(S_IFSOCK); SHOW(S_IFLNK); SHOW(S_IFREG); SHOW(S_IFBLK); SHOW(S_IFDIR);
    SHOW(S_IFCHR); SHOW(S_IFIFO); SHOW(S_ISUID); SHOW(S_ISGID); SHOW(S_ISVTX);
    SHOW(S_IRWXU); SHOW(S_IRUSR); SHOW(S_IWUSR); SHOW(S_IXUSR); SHOW(S_IRWXG); SHOW(S_IRWXO);
    SHOW(CLOCK_REALTIME); SHOW(CLOCK_MONOTONIC); SHOW(CLOCK_PROCESS_CPUTIME_ID);
    SHOW(CLOCK_THREAD_CPUTIME_ID); SHOW(CLOCK_MONOTONIC_RAW); SHOW(CLOCK_BOOTTIME);
    SHOW(PROT_READ); SHOW(PROT_WRITE); SHOW(PROT_EXEC); SHOW(MAP_SHARED); SHOW(MAP_PRIVATE);
    SHOW(MAP_ANONYMOUS); SHOW(MAP_FIXED); SHOW(MAP_NORESERVE); SHOW(MAP_POPULATE);

    for (int i = 0; i <= 134; i++)
        printf("strerror %d=%s\n", i, strerror(i));
    printf("strerror -1=%s\n", strerror(-1));
    char small[8];
    CHECK(strerror_r(ENOENT, small, sizeof(small)) == ERANGE && strcmp(small, "No such") == 0);
    CHECK(strerror_r(99999, small, sizeof(small)) == EINVAL);

    /* Failures report Linux's errno. */
    errno = 0;
    CHECK(open("/nonexistent/krunc", O_RDONLY) == -1 && errno == ENOENT);
    printf("open missing: %s\n", strerror(errno));
    CHECK(close(-1) == -1 && errno == EBADF);
    CHECK(mkdir("/", 0755) == -1 && errno == EEXIST);
    char buf[4];
    int fd = open("/", O_RDONLY | O_DIRECTORY);
    CHECK(fd >= 0 && read(fd, buf, sizeof(buf)) == -1 && errno == EISDIR);
    close(fd);
    CHECK(lseek(0, 0, 99) == -1 && errno == EINVAL);
    CHECK(rmdir("/nonexistent/krunc") == -1 && errno == ENOENT);
    CHECK(unlink("/") == -1 && (errno == EISDIR || errno == EPERM));
    errno = EACCES;
    perror("perror says");
    errno = 0;
    CHECK(write(1, "", 0) == 0 && errno == 0);  /* success leaves errno alone */
    return checks_done();
}
