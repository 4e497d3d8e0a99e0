/*
 * <unistd.h>: POSIX calls, each one KM hypercall (the same number as the
 * Linux syscall). There is no fork: KM runs one process with one vCPU.
 */
#ifndef _KRUNC_UNISTD_H
#define _KRUNC_UNISTD_H

#include <bits/krunc.h>

__KRUNC_BEGIN

#define STDIN_FILENO 0
#define STDOUT_FILENO 1
#define STDERR_FILENO 2

#define F_OK 0
#define X_OK 1
#define W_OK 2
#define R_OK 4

#ifndef SEEK_SET
#define SEEK_SET 0
#define SEEK_CUR 1
#define SEEK_END 2
#endif

/* sysconf names (glibc's numbering). */
#define _SC_ARG_MAX 0
#define _SC_CHILD_MAX 1
#define _SC_CLK_TCK 2
#define _SC_OPEN_MAX 4
#define _SC_PAGESIZE 30
#define _SC_PAGE_SIZE _SC_PAGESIZE
#define _SC_NPROCESSORS_CONF 83
#define _SC_NPROCESSORS_ONLN 84

extern char **environ;

ssize_t read(int fd, void *buf, size_t n);
ssize_t write(int fd, const void *buf, size_t n);
ssize_t pread(int fd, void *buf, size_t n, off_t off);
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off);
int close(int fd);
off_t lseek(int fd, off_t off, int whence);
int dup(int fd);
int dup2(int fd, int to);
int dup3(int fd, int to, int flags);
int pipe(int fds[2]);
int pipe2(int fds[2], int flags);
int fsync(int fd);
int fdatasync(int fd);
int ftruncate(int fd, off_t len);
int isatty(int fd);

int access(const char *path, int mode);
int unlink(const char *path);
int rmdir(const char *path);
int chdir(const char *path);
char *getcwd(char *buf, size_t size);
ssize_t readlink(const char *__krunc_restrict path, char *__krunc_restrict buf, size_t n);
int gethostname(char *name, size_t n);

pid_t getpid(void);
pid_t getppid(void);
pid_t gettid(void);
uid_t getuid(void);
uid_t geteuid(void);
gid_t getgid(void);
gid_t getegid(void);

unsigned int sleep(unsigned int secs);
int usleep(useconds_t usecs);
int pause(void);
unsigned int alarm(unsigned int secs);

__krunc_noreturn void _exit(int status);
int execve(const char *path, char *const argv[], char *const envp[]);
int execv(const char *path, char *const argv[]);
int execvp(const char *file, char *const argv[]);

int brk(void *end);
void *sbrk(long delta);
long sysconf(int name);
int getpagesize(void);
long syscall(long nr, ...);

extern char *optarg;
extern int optind, opterr, optopt;
int getopt(int argc, char *const argv[], const char *opts);

__KRUNC_END

#endif
