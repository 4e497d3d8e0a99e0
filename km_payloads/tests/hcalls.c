/*
 * hcalls: exercises the implemented hypercalls and prints one "key=value"
 * line per check, for tests/test_km.py to compare against the host's view.
 */
#include "km_rt.h"

#define SIGSET_SIZE 8

static const char *ok(int cond)
{
    return cond ? "ok" : "bad";
}

static void ids(void)
{
    rt_printf("getpid=%ld\n", rt_getpid());
    rt_printf("getppid=%ld\n", HC0(__NR_getppid));
    rt_printf("uid=%ld\n", HC0(__NR_getuid));
    rt_printf("euid=%ld\n", HC0(__NR_geteuid));
    rt_printf("gid=%ld\n", HC0(__NR_getgid));
    rt_printf("egid=%ld\n", HC0(__NR_getegid));
    rt_printf("set_tid_address=%ld\n", HC1(__NR_set_tid_address, 0));
}

/* Writes and reads back one byte per MiB: the region must be real guest memory. */
static int touch_all(long start, unsigned long len)
{
    if (start <= 0)
        return 0;
    volatile char *p = (volatile char *)start;
    for (unsigned long off = 0; off < len; off += 1 << 20)
        p[off] = (char)(off >> 20);
    p[len - 1] = 42;
    for (unsigned long off = 0; off < len; off += 1 << 20)
        if (p[off] != (char)(off >> 20))
            return 0;
    return p[len - 1] == 42;
}

static void memory(void)
{
    long cur = rt_brk(0);
    long grown = rt_brk((char *)cur + 65536);
    int brk_ok = grown == cur + 65536;
    if (brk_ok) {
        ((volatile char *)cur)[65535] = 7;
        brk_ok = ((volatile char *)cur)[65535] == 7;
    }
    rt_printf("brk=%s\n", ok(cur > 0x200000 && brk_ok && rt_brk((void *)cur) == cur));

    size_t len = 1 << 20;
    long p = rt_mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int zero = p > 0;
    for (size_t i = 0; zero && i < len; i += 4096)
        zero = ((volatile char *)p)[i] == 0;
    if (p > 0)
        memset((void *)p, 0xab, len);
    rt_printf("mmap_anon=%s\n", ok(p > 0 && zero));
    rt_printf("mmap_noreplace=%s\n",
              rt_errname(rt_mmap((void *)p, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)));
    rt_printf("munmap=%ld\n", rt_munmap((void *)p, len));
    long q = rt_mmap((void *)p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    rt_printf("mmap_fixed_rezeroed=%s\n", ok(q == p && ((volatile char *)q)[4096] == 0));
    rt_printf("mmap_big=%s\n", ok(touch_all(rt_mmap(0, 96UL << 20, PROT_READ | PROT_WRITE,
                                                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), 96UL << 20)));
    long heap = rt_brk(0);
    rt_printf("brk_big=%s\n", ok(rt_brk((char *)heap + (80L << 20)) == heap + (80L << 20) &&
                                  touch_all(heap, 80UL << 20)));
    rt_printf("mmap_huge=%s\n",
              rt_errname(rt_mmap(0, 1UL << 31, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)));
}

static void files_and_fds(void)
{
    char cwd[512];
    long n = rt_getcwd(cwd, sizeof(cwd));
    rt_printf("getcwd=%s\n", n > 0 ? cwd : rt_errname(n));

    long fd = rt_open("/dev/null", O_RDONLY, 0);
    rt_printf("first_fd=%ld\n", fd);
    struct stat st;
    rt_printf("fstat=%s\n", ok(rt_fstat((int)fd, &st) == 0 && (st.st_mode & 0170000) == 0020000));
    rt_printf("lseek=%ld\n", rt_lseek((int)fd, 0, 0));

    /* KM's own descriptors must be invisible and untouchable. */
    char list[256];
    int len = 0, closed = 0;
    for (int i = 0; i < 1024; i++) {
        if (HC2(__NR_fcntl, i, F_GETFD) >= 0)
            len += rt_snprintf(list + len, sizeof(list) - len, "%s%d", len ? "," : "", i);
        else if (i > 3 && rt_close(i) == 0)
            closed++;
    }
    rt_printf("visible_fds=%s\n", list);
    rt_printf("closed_hidden=%d\n", closed);
    rt_close((int)fd);
}

static void misc(void)
{
    struct rt_winsize ws;
    struct __kernel_timespec t0, t1, nap = { 0, 10 * 1000 * 1000 };
    unsigned char rnd[16] = { 0 };
    int nonzero = 0;

    rt_printf("ioctl_winsize_pipe=%s\n", rt_errname(rt_ioctl(1, TIOCGWINSZ, &ws)));
    rt_printf("ioctl_other=%s\n", rt_errname(rt_ioctl(1, 0x5401 /* TCGETS */, &ws)));
    rt_printf("unknown_hypercall=%s\n", rt_errname(HC0(500)));
    long n = rt_getrandom(rnd, sizeof(rnd), 0);
    for (int i = 0; i < 16; i++)
        nonzero |= rnd[i];
    rt_printf("getrandom=%s\n", ok(n == 16 && nonzero));
    rt_clock_gettime(1 /* CLOCK_MONOTONIC */, &t0);
    long slept = rt_nanosleep(&nap, 0);
    rt_clock_gettime(1, &t1);
    long elapsed_ns = (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);
    rt_printf("nanosleep=%s\n", ok(slept == 0 && elapsed_ns >= 10 * 1000 * 1000));
    uint64_t old[4] = { 1, 1, 1, 1 };
    rt_printf("rt_sigaction=%ld\n", km_syscall(__NR_rt_sigaction, 15, 0, (uint64_t)old, SIGSET_SIZE, 0, 0));
    rt_printf("rt_sigaction_old_zeroed=%s\n", ok(!old[0] && !old[1] && !old[2] && !old[3]));
    rt_printf("rt_sigprocmask=%ld\n", km_syscall(__NR_rt_sigprocmask, 0, 0, (uint64_t)old, SIGSET_SIZE, 0, 0));
    rt_printf("arch_prctl_gs=%s\n", rt_errname(rt_arch_prctl(ARCH_SET_GS, 0x300000)));
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    ids();
    memory();
    files_and_fds();
    misc();
    return 0;
}
