/*
 * The library's private header: hypercall plumbing and what its parts
 * share. Built with the public headers only (-nostdinc), so the library
 * and the payloads that link it see the same declarations.
 */
#ifndef _KRUNC_INTERNAL_H
#define _KRUNC_INTERNAL_H

#include <errno.h>
#include <kontain.h>
#include <stdint.h>
#include <stdio.h>

/* Linux x86-64 syscall numbers: KM's hypercall n is port 0x8000 + n. */
enum {
    NR_read = 0, NR_write = 1, NR_open = 2, NR_close = 3, NR_stat = 4, NR_fstat = 5,
    NR_lstat = 6, NR_lseek = 8, NR_mmap = 9, NR_mprotect = 10, NR_munmap = 11, NR_brk = 12,
    NR_rt_sigaction = 13, NR_rt_sigprocmask = 14, NR_rt_sigreturn = 15, NR_ioctl = 16,
    NR_pread64 = 17, NR_pwrite64 = 18, NR_readv = 19, NR_writev = 20, NR_access = 21,
    NR_pipe = 22, NR_sched_yield = 24, NR_madvise = 28, NR_dup = 32, NR_dup2 = 33,
    NR_pause = 34, NR_nanosleep = 35, NR_getitimer = 36, NR_alarm = 37, NR_setitimer = 38,
    NR_getpid = 39, NR_execve = 59, NR_exit = 60, NR_kill = 62, NR_uname = 63, NR_fcntl = 72,
    NR_fsync = 74, NR_ftruncate = 77, NR_getcwd = 79, NR_chdir = 80, NR_rename = 82,
    NR_mkdir = 83, NR_rmdir = 84, NR_unlink = 87, NR_readlink = 89, NR_umask = 95,
    NR_getuid = 102, NR_getgid = 104, NR_geteuid = 107, NR_getegid = 108, NR_getppid = 110,
    NR_rt_sigpending = 127, NR_rt_sigsuspend = 130, NR_sigaltstack = 131,
    NR_arch_prctl = 158, NR_gettid = 186, NR_getdents64 = 217, NR_clock_gettime = 228,
    NR_clock_getres = 229, NR_clock_nanosleep = 230, NR_exit_group = 231, NR_openat = 257,
    NR_mkdirat = 258, NR_newfstatat = 262, NR_unlinkat = 263, NR_faccessat = 269,
    NR_dup3 = 292, NR_pipe2 = 293, NR_getrandom = 318,
};

/* The argument block lives on the caller's stack; KM fills in hc_ret. */
static inline long __hc(unsigned int nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
    km_hc_args_t args = { 0, (uint64_t)a1, (uint64_t)a2, (uint64_t)a3,
                          (uint64_t)a4, (uint64_t)a5, (uint64_t)a6 };
    return km_hcall(nr, &args);
}

#define HC0(nr) __hc(nr, 0, 0, 0, 0, 0, 0)
#define HC1(nr, a) __hc(nr, (long)(a), 0, 0, 0, 0, 0)
#define HC2(nr, a, b) __hc(nr, (long)(a), (long)(b), 0, 0, 0, 0)
#define HC3(nr, a, b, c) __hc(nr, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define HC4(nr, a, b, c, d) __hc(nr, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define HC6(nr, a, b, c, d, e, f) \
    __hc(nr, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

/* A raw result to the C convention: -errno becomes -1 with errno set. */
static inline long __sysret(long r)
{
    if ((unsigned long)r > -4096UL) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

#define SYS0(nr) __sysret(HC0(nr))
#define SYS1(nr, a) __sysret(HC1(nr, a))
#define SYS2(nr, a, b) __sysret(HC2(nr, a, b))
#define SYS3(nr, a, b, c) __sysret(HC3(nr, a, b, c))
#define SYS4(nr, a, b, c, d) __sysret(HC4(nr, a, b, c, d))

__krunc_noreturn void __krunc_exit_now(int status);

/* Formatting core shared by printf and its relatives: out() takes each run of bytes. */
struct __krunc_sink {
    void (*out)(struct __krunc_sink *s, const char *p, size_t n);
    size_t count;       /* bytes produced so far, whether or not they fitted */
    int error;
};
int __krunc_vformat(struct __krunc_sink *s, const char *fmt, __builtin_va_list ap);

/* A stdio stream. */
struct __krunc_file {
    int fd;
    unsigned int flags;
    unsigned char *buf;
    size_t size;
    unsigned char *rpos, *rend;     /* read buffer: [rpos, rend) unread */
    unsigned char *wpos;            /* write buffer: [buf, wpos) pending */
    int ungot;                      /* a pushed-back byte, or EOF */
    struct __krunc_file *next;      /* every stream, for fflush(NULL) and exit */
    unsigned char tiny[1];          /* the buffer of an unbuffered stream */
};

#define F_READ     0x001
#define F_WRITE    0x002
#define F_APPEND   0x004
#define F_EOF      0x008
#define F_ERR      0x010
#define F_LBF      0x020
#define F_NBF      0x040
#define F_BUF_SET  0x080    /* buffering chosen (setvbuf or the first I/O) */
#define F_OWN_BUF  0x100    /* buf came from malloc */
#define F_STATIC   0x200    /* stdin/stdout/stderr: never freed */
#define F_READING  0x400    /* the buffer holds read-ahead */
#define F_WRITING  0x800    /* the buffer holds pending output */

size_t __krunc_fwrite(const void *p, size_t n, FILE *f);
int __krunc_fgetc(FILE *f);
int __krunc_ungetc(int c, FILE *f);

/*
 * Defined by stdio. exit() refers to it weakly, so a payload that never
 * uses stdio does not pull stdio in just to flush nothing.
 */
void __krunc_stdio_flush_all(void) __attribute__((weak));
/* Defined by atexit.c, weakly referred to for the same reason. */
void __krunc_run_atexit(void) __attribute__((weak));

#endif
