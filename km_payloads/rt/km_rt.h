/*
 * A tiny freestanding runtime for Kontain payloads: hypercall wrappers,
 * process start, and string/number helpers. No libc. Every system service
 * is a KM hypercall, so these programs only work inside a KM guest; run
 * natively, the first hypercall faults (SIGSEGV), which is intended.
 *
 * Wrappers return the raw result: a value >= 0, or -errno.
 */
#ifndef KM_RT_H
#define KM_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <asm-generic/errno.h>
#include <asm/ioctls.h>
#include <asm/prctl.h>
#include <asm/sigcontext.h>
#include <asm/siginfo.h>
#include <asm/signal.h>
#include <asm/stat.h>
#include <asm/ucontext.h>
#include <asm/unistd.h>
#include <linux/fcntl.h>
#include <linux/mman.h>
#include <linux/signal.h>
#include <linux/time.h>
#include <linux/time_types.h>
#include <linux/utsname.h>

#define KM_HC_PORT_BASE 0x8000

/* The hypercall argument block (Kontain ABI). */
typedef struct km_hc_args {
    uint64_t hc_ret, arg1, arg2, arg3, arg4, arg5, arg6;
} km_hc_args_t;

/* Store the block's address at %gs:0, then `outl` to port 0x8000 + nr. */
static inline long km_hcall(unsigned int nr, km_hc_args_t *args)
{
    __asm__ volatile("movq %0, %%gs:0\n\t"
                     "outl %%eax, %%dx"
                     :
                     : "r"(args), "d"((uint16_t)(KM_HC_PORT_BASE + nr)), "a"(0)
                     : "memory");
    return (long)args->hc_ret;
}

static inline long km_syscall(unsigned int nr, uint64_t a1, uint64_t a2, uint64_t a3,
                              uint64_t a4, uint64_t a5, uint64_t a6)
{
    km_hc_args_t args = { 0, a1, a2, a3, a4, a5, a6 };
    return km_hcall(nr, &args);
}

/* A Linux `syscall` instruction, not a hypercall: KM catches it through MSR_LSTAR (the
   tests prove that path works like the port one). */
static inline long rt_syscall_insn3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret), "+D"(a), "+S"(b), "+d"(c)
                     : "a"(nr)
                     : "rcx", "r11", "memory");
    return ret;
}

#define HC0(nr)                 km_syscall(nr, 0, 0, 0, 0, 0, 0)
#define HC1(nr, a)              km_syscall(nr, (uint64_t)(a), 0, 0, 0, 0, 0)
#define HC2(nr, a, b)           km_syscall(nr, (uint64_t)(a), (uint64_t)(b), 0, 0, 0, 0)
#define HC3(nr, a, b, c)        km_syscall(nr, (uint64_t)(a), (uint64_t)(b), (uint64_t)(c), 0, 0, 0)

struct rt_winsize {
    unsigned short ws_row, ws_col, ws_xpixel, ws_ypixel;
};

struct rt_iovec {
    const void *base;
    size_t len;
};

static inline long rt_read(int fd, void *buf, size_t n) { return HC3(__NR_read, fd, buf, n); }
static inline long rt_write(int fd, const void *buf, size_t n) { return HC3(__NR_write, fd, buf, n); }
static inline long rt_writev(int fd, const struct rt_iovec *iov, int cnt) { return HC3(__NR_writev, fd, iov, cnt); }
static inline long rt_open(const char *path, int flags, int mode) { return HC3(__NR_open, path, flags, mode); }
static inline long rt_close(int fd) { return HC1(__NR_close, fd); }
static inline long rt_lseek(int fd, long off, int whence) { return HC3(__NR_lseek, fd, off, whence); }
static inline long rt_fstat(int fd, struct stat *st) { return HC2(__NR_fstat, fd, st); }
static inline long rt_ioctl(int fd, unsigned int cmd, void *arg) { return HC3(__NR_ioctl, fd, cmd, arg); }
static inline long rt_uname(struct new_utsname *u) { return HC1(__NR_uname, u); }
static inline long rt_nanosleep(const struct __kernel_timespec *req, struct __kernel_timespec *rem)
{
    return HC2(__NR_nanosleep, req, rem);
}
static inline long rt_clock_gettime(int clk, struct __kernel_timespec *ts) { return HC2(__NR_clock_gettime, clk, ts); }
static inline long rt_getpid(void) { return HC0(__NR_getpid); }
static inline long rt_brk(void *addr) { return HC1(__NR_brk, addr); }
static inline long rt_arch_prctl(int code, uint64_t addr) { return HC2(__NR_arch_prctl, code, addr); }
static inline long rt_getcwd(char *buf, size_t size) { return HC2(__NR_getcwd, buf, size); }
static inline long rt_getrandom(void *buf, size_t n, unsigned int flags) { return HC3(__NR_getrandom, buf, n, flags); }
static inline long rt_munmap(void *addr, size_t len) { return HC2(__NR_munmap, addr, len); }
static inline long rt_mmap(void *addr, size_t len, int prot, int flags, int fd, long off)
{
    return km_syscall(__NR_mmap, (uint64_t)addr, len, (uint64_t)prot, (uint64_t)flags,
                      (uint64_t)fd, (uint64_t)off);
}
static inline long rt_getppid(void) { return HC0(__NR_getppid); }
static inline long rt_kill(int pid, int sig) { return HC2(__NR_kill, pid, sig); }
static inline long rt_pipe(int fds[2]) { return HC1(__NR_pipe, fds); }
static inline long rt_execve(const char *path, char *const argv[], char *const envp[])
{
    return HC3(__NR_execve, path, argv, envp);
}
static inline long rt_sigprocmask(int how, const uint64_t *set, uint64_t *old)
{
    return km_syscall(__NR_rt_sigprocmask, (uint64_t)how, (uint64_t)set, (uint64_t)old, 8, 0, 0);
}
static inline long rt_setitimer(int which, const struct __kernel_old_itimerval *nv,
                                struct __kernel_old_itimerval *old)
{
    return HC3(__NR_setitimer, which, nv, old);
}
__attribute__((noreturn)) void rt_exit(int code);

/* KM's snapshot hypercall (505): 0 in the resumed instance and in a live original. */
#define KM_HC_SNAPSHOT 505
static inline long rt_snapshot(const char *label, const char *desc, int live)
{
    return HC3(KM_HC_SNAPSHOT, label, desc, live);
}
static inline long rt_sleep_ms(long ms)
{
    struct __kernel_timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };
    return rt_nanosleep(&ts, 0);
}

/*
 * Signals. The kernel's struct sigaction; rt_signal() installs a handler
 * with rt's restorer (rt_restore, start.S), which x86-64 requires.
 */
struct rt_sigaction {
    void *handler;
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};
#define RT_SIGBIT(sig) (1ULL << ((sig) - 1))
void rt_restore(void);
static inline long rt_sigaction(int sig, const struct rt_sigaction *act, struct rt_sigaction *old)
{
    return km_syscall(__NR_rt_sigaction, (uint64_t)sig, (uint64_t)act, (uint64_t)old, 8, 0, 0);
}
/* handler(int sig, siginfo_t *info, struct ucontext *uc); flags: SA_RESTART etc. */
long rt_signal(int sig, void *handler, unsigned long flags, uint64_t mask);

/* Strings and numbers (the mem* functions are real symbols: GCC may call them). */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t rt_strlen(const char *s);
int rt_strcmp(const char *a, const char *b);
int rt_strncmp(const char *a, const char *b, size_t n);
int rt_parse_long(const char *s, long *out);    /* 0 on success */
const char *rt_errname(long err);               /* "EFAULT" for -14 */

/* printf subset: %s %c %d %u %x %p %%, with l/ll length; writes whole lines. */
int rt_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int rt_snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int rt_dprintf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define rt_printf(...) rt_dprintf(1, __VA_ARGS__)

/* Each payload provides main; argv[argc] and envp end with NULL. */
int main(int argc, char **argv, char **envp);

#endif
