/*
 * Hypercalls. The guest stores the guest address of
 *   struct { uint64_t hc_ret, arg1, ..., arg6; }
 * at %gs:0 and does `outl %eax, %dx` to port 0x8000 + n, n being the Linux
 * x86-64 syscall number. KM runs the call with Linux semantics and stores
 * the result (or -errno) in hc_ret. Unimplemented calls get -ENOTSUP, as
 * in Kontain's ABI.
 *
 * Most calls are declarative: the table says which arguments are guest
 * pointers (and how big) or descriptors, and the generic path checks and
 * translates them before making the same host syscall. Every guest pointer
 * is range-checked, so a payload can never make KM touch host memory outside
 * the guest, and KM's own descriptors are off limits.
 */
#include <asm/prctl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "km.h"

#define HC_BLOCK_SIZE   (7 * sizeof(uint64_t))
#define CANONICAL_LIMIT (1ULL << 47)

enum arg_kind {
    A_VAL,          /* plain value */
    A_FD,           /* descriptor; KM's own are refused */
    A_DIRFD,        /* descriptor or AT_FDCWD */
    A_PATH,         /* NUL-terminated guest string */
    A_BUF,          /* guest buffer; its length is the next argument */
    A_STAT,         /* struct stat */
    A_TS,           /* struct timespec */
    A_TS_OPT,       /* struct timespec, or NULL */
    A_FDPAIR,       /* int[2] */
    A_ITV,          /* struct itimerval */
    A_ITV_OPT,      /* struct itimerval, or NULL */
};

static const size_t object_size[] = {
    [A_STAT] = sizeof(struct stat),
    [A_TS] = sizeof(struct timespec),
    [A_TS_OPT] = sizeof(struct timespec),
    [A_FDPAIR] = 2 * sizeof(int),
    [A_ITV] = sizeof(struct itimerval),
    [A_ITV_OPT] = sizeof(struct itimerval),
};

typedef int64_t (*hc_handler)(struct km *km, const uint64_t *a);

struct hc_desc {
    const char *name;
    hc_handler fn;              /* NULL: the host syscall with translated args */
    uint8_t nargs;
    bool restart;               /* after EINTR, restarted for an SA_RESTART handler */
    uint8_t kind[6];
};

static int64_t sys_result(long r)
{
    return r < 0 ? -errno : r;
}

static int64_t hc_exit_group(struct km *km, const uint64_t *a)
{
    km->exit_code = (int)(a[0] & 0xff);
    return 0;
}

static int64_t hc_uname(struct km *km, const uint64_t *a)
{
    struct utsname u;
    void *p = km_gptr(km, a[0], sizeof(u));
    if (!p)
        return -EFAULT;
    if (uname(&u) < 0)
        return -errno;
    /* Payloads can tell they run under KM: release ends in .kontain.KVM. */
    size_t len = strlen(u.release), add = strlen(km->uname_suffix);
    if (len + add < sizeof(u.release))
        memcpy(u.release + len, km->uname_suffix, add + 1);
    memcpy(p, &u, sizeof(u));
    return 0;
}

static int64_t hc_ioctl(struct km *km, const uint64_t *a)
{
    int fd = (int)a[0];
    if (km_is_private_fd(km, fd))
        return -EBADF;
    /* Only what a libc needs to set up stdio (isatty via TIOCGWINSZ). */
    if (fd < 0 || fd > 2 || (unsigned int)a[1] != TIOCGWINSZ)
        return -ENOTTY;
    struct winsize *ws = km_gptr(km, a[2], sizeof(*ws));
    if (!ws)
        return -EFAULT;
    return sys_result(ioctl(fd, TIOCGWINSZ, ws));
}

static int64_t iov_io(struct km *km, const uint64_t *a, bool is_write)
{
    static struct iovec iov[IOV_MAX];
    int fd = (int)a[0];
    uint64_t cnt = a[2];

    if (km_is_private_fd(km, fd))
        return -EBADF;
    if (cnt > IOV_MAX)
        return -EINVAL;
    const uint8_t *giov = km_gptr(km, a[1], cnt * 16);
    if (!giov)
        return -EFAULT;
    for (uint64_t i = 0; i < cnt; i++) {
        uint64_t base, len;
        memcpy(&base, giov + 16 * i, 8);
        memcpy(&len, giov + 16 * i + 8, 8);
        if (!(iov[i].iov_base = km_gptr(km, base, len)))
            return -EFAULT;
        iov[i].iov_len = len;
    }
    return km_blocking_syscall(is_write ? SYS_writev : SYS_readv, fd, (long)iov, (long)cnt,
                               0, 0, 0);
}

static int64_t hc_writev(struct km *km, const uint64_t *a)
{
    return iov_io(km, a, true);
}

static int64_t hc_readv(struct km *km, const uint64_t *a)
{
    return iov_io(km, a, false);
}

static int64_t hc_fcntl(struct km *km, const uint64_t *a)
{
    int fd = (int)a[0];
    if (km_is_private_fd(km, fd))
        return -EBADF;
    switch ((int)a[1]) {
    case F_DUPFD: case F_DUPFD_CLOEXEC: case F_GETFD: case F_SETFD: case F_GETFL: case F_SETFL:
        return sys_result(fcntl(fd, (int)a[1], (int)a[2]));
    default:
        return -EINVAL;     /* the pointer-taking commands are not translated */
    }
}

/*
 * brk grows from the end of the loaded image into free pages; a request it
 * cannot satisfy leaves it where it was (Linux semantics).
 */
static int64_t hc_brk(struct km *km, const uint64_t *a)
{
    uint64_t want = a[0];
    if (want < km->brk_start || want > KM_GUEST_TOP)
        return (int64_t)km->brk;
    uint64_t old_end = km_page_up(km->brk), new_end = km_page_up(want);
    if (new_end > old_end) {
        if (!km_pages_free(km, old_end, new_end))
            return (int64_t)km->brk;
        if (!km_pages_reserve(km, old_end, new_end)) {
            km_pages_release(km, old_end, new_end);
            return (int64_t)km->brk;
        }
    } else if (new_end < old_end) {
        km_pages_release(km, new_end, old_end);
    }
    km->brk = want;
    return (int64_t)want;
}

static int64_t map_file(struct km *km, uint64_t at, uint64_t len, int fd, uint64_t off)
{
    uint64_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, km->mem + at + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;          /* past EOF the pages stay zero */
        done += (uint64_t)n;
    }
    return 0;
}

static bool page_aligned(uint64_t addr)
{
    return (addr & (KM_PAGE_SIZE - 1)) == 0;
}

/* [addr, addr+len) rounded to pages lies in guest memory; overflow-safe. */
static bool page_range_ok(uint64_t addr, uint64_t len)
{
    return page_aligned(addr) && len <= KM_GUEST_TOP && km_range_ok(addr, km_page_up(len));
}

static int64_t hc_mmap(struct km *km, const uint64_t *a)
{
    uint64_t addr = a[0], len = a[1], at;
    int prot = (int)a[2], flags = (int)a[3], fd = (int)a[4];
    bool anon = flags & MAP_ANONYMOUS;
    bool fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE);

    if (len == 0 || (fixed && !page_aligned(addr)))
        return -EINVAL;
    if (len > KM_GUEST_TOP)
        return -ENOMEM;
    len = km_page_up(len);
    if (!anon) {
        if (km_is_private_fd(km, fd))
            return -EBADF;
        if (!page_aligned(a[5]))
            return -EINVAL;
        /* A private copy cannot honor writes that must reach the file. */
        if ((flags & MAP_TYPE) == MAP_SHARED && (prot & PROT_WRITE))
            return -ENODEV;
    }
    if (fixed) {
        if (!km_range_ok(addr, len))
            return -ENOMEM;
        if ((flags & MAP_FIXED_NOREPLACE) && !km_pages_free(km, addr, addr + len))
            return -EEXIST;
        km_pages_release(km, addr, addr + len);     /* replaced contents read as zero */
        at = addr;
    } else if (addr && page_aligned(addr) && km_range_ok(addr, len) &&
               km_pages_free(km, addr, addr + len)) {
        at = addr;
    } else if ((at = km_pages_find(km, len, KM_GUEST_TOP - KM_STACK_SIZE)) == 0) {
        return -ENOMEM;
    }
    if (!km_pages_reserve(km, at, at + len)) {
        km_pages_release(km, at, at + len);
        return -ENOMEM;
    }
    if (!anon) {
        int64_t r = map_file(km, at, len, fd, a[5]);
        if (r < 0) {
            km_pages_release(km, at, at + len);
            return r;
        }
    }
    return (int64_t)at;
}

static int64_t hc_munmap(struct km *km, const uint64_t *a)
{
    if (a[1] == 0 || !page_range_ok(a[0], a[1]))
        return -EINVAL;
    km_pages_release(km, a[0], a[0] + a[1]);
    return 0;
}

/* Guest pages are always read-write-execute; accepting keeps libcs happy. */
static int64_t hc_mprotect(struct km *km, const uint64_t *a)
{
    (void)km;
    if (!page_aligned(a[0]))
        return -EINVAL;
    return page_range_ok(a[0], a[1]) ? 0 : -ENOMEM;
}

static int64_t hc_madvise(struct km *km, const uint64_t *a)
{
    if (!page_range_ok(a[0], a[1]))
        return -EINVAL;
    if ((int)a[2] == MADV_DONTNEED)
        km_discard(km, a[0], km_page_up(a[1]));
    return 0;
}

static int64_t hc_arch_prctl(struct km *km, const uint64_t *a)
{
    struct kvm_sregs sregs;
    uint64_t *out;

    switch (a[0]) {
    case ARCH_SET_FS:
        if (a[1] >= CANONICAL_LIMIT)
            return -EPERM;
        if (ioctl(km->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
            return -EIO;
        sregs.fs.base = a[1];
        return ioctl(km->vcpu_fd, KVM_SET_SREGS, &sregs) < 0 ? -EIO : 0;
    case ARCH_GET_FS:
        if (!(out = km_gptr(km, a[1], sizeof(*out))))
            return -EFAULT;
        if (ioctl(km->vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
            return -EIO;
        memcpy(out, &sregs.fs.base, sizeof(*out));
        return 0;
    case ARCH_SET_GS:
    case ARCH_GET_GS:
        return -ENOTSUP;    /* GS belongs to the hypercall ABI */
    default:
        return -EINVAL;
    }
}

static int64_t hc_set_tid_address(struct km *km, const uint64_t *a)
{
    (void)km;
    (void)a;
    return sys_result(syscall(SYS_gettid));
}

#define PASS(name, n, ...) [SYS_##name] = { #name, NULL, n, false, { __VA_ARGS__ } }
#define CALL(name, n, ...) [SYS_##name] = { #name, hc_##name, n, false, { __VA_ARGS__ } }
#define CALL_AS(name, fn, n, ...) [SYS_##name] = { #name, fn, n, false, { __VA_ARGS__ } }
/*
 * Calls Linux restarts after an SA_RESTART handler (signal(7)); the rest
 * (sleeps, pause, sigsuspend...) return EINTR to a handled signal.
 */
#define PASS_R(name, n, ...) [SYS_##name] = { #name, NULL, n, true, { __VA_ARGS__ } }
#define CALL_R(name, n, ...) [SYS_##name] = { #name, hc_##name, n, true, { __VA_ARGS__ } }
#define SIG_CALL(name, n) [SYS_##name] = { #name, km_hc_##name, n, false, { 0 } }

static const struct hc_desc hc_table[KM_HC_MAX] = {
    PASS_R(read, 3, A_FD, A_BUF, A_VAL),
    PASS_R(write, 3, A_FD, A_BUF, A_VAL),
    PASS_R(open, 3, A_PATH, A_VAL, A_VAL),
    PASS(close, 1, A_FD),
    PASS(stat, 2, A_PATH, A_STAT),
    PASS(fstat, 2, A_FD, A_STAT),
    PASS(lstat, 2, A_PATH, A_STAT),
    PASS(lseek, 3, A_FD, A_VAL, A_VAL),
    CALL(mmap, 6, A_VAL, A_VAL, A_VAL, A_VAL, A_FD, A_VAL),
    CALL(mprotect, 3),
    CALL(munmap, 2),
    CALL(brk, 1),
    SIG_CALL(rt_sigaction, 4),
    SIG_CALL(rt_sigprocmask, 4),
    SIG_CALL(rt_sigreturn, 0),
    CALL_R(ioctl, 3, A_FD),
    PASS_R(pread64, 4, A_FD, A_BUF, A_VAL, A_VAL),
    PASS_R(pwrite64, 4, A_FD, A_BUF, A_VAL, A_VAL),
    CALL_R(readv, 3, A_FD),
    CALL_R(writev, 3, A_FD),
    PASS(access, 2, A_PATH, A_VAL),
    PASS(pipe, 1, A_FDPAIR),
    PASS(sched_yield, 0),
    CALL(madvise, 3),
    PASS(dup, 1, A_FD),
    PASS(dup2, 2, A_FD, A_FD),
    PASS(pause, 0),
    PASS(nanosleep, 2, A_TS, A_TS_OPT),
    PASS(getitimer, 2, A_VAL, A_ITV),
    PASS(alarm, 1, A_VAL),
    PASS(setitimer, 3, A_VAL, A_ITV, A_ITV_OPT),
    PASS(getpid, 0),
    [SYS_execve] = { "execve", km_hc_execve, 3, false, { A_PATH } },
    SIG_CALL(kill, 2),
    CALL_AS(exit, hc_exit_group, 1),
    CALL(uname, 1),
    CALL(fcntl, 3, A_FD),
    PASS(fsync, 1, A_FD),
    PASS(ftruncate, 2, A_FD, A_VAL),
    PASS(getcwd, 2, A_BUF, A_VAL),
    PASS(chdir, 1, A_PATH),
    PASS(rename, 2, A_PATH, A_PATH),
    PASS(mkdir, 2, A_PATH, A_VAL),
    PASS(rmdir, 1, A_PATH),
    PASS(unlink, 1, A_PATH),
    PASS(readlink, 3, A_PATH, A_BUF, A_VAL),
    PASS(umask, 1, A_VAL),
    PASS(getuid, 0),
    PASS(getgid, 0),
    PASS(geteuid, 0),
    PASS(getegid, 0),
    PASS(getppid, 0),
    SIG_CALL(rt_sigpending, 2),
    SIG_CALL(rt_sigsuspend, 2),
    SIG_CALL(sigaltstack, 2),
    CALL(arch_prctl, 2),
    PASS(gettid, 0),
    SIG_CALL(tkill, 2),
    PASS(getdents64, 3, A_FD, A_BUF, A_VAL),
    CALL(set_tid_address, 1),
    PASS(clock_gettime, 2, A_VAL, A_TS),
    PASS(clock_getres, 2, A_VAL, A_TS_OPT),
    PASS(clock_nanosleep, 4, A_VAL, A_VAL, A_TS, A_TS_OPT),
    CALL(exit_group, 1),
    SIG_CALL(tgkill, 3),
    PASS_R(openat, 4, A_DIRFD, A_PATH, A_VAL, A_VAL),
    PASS(mkdirat, 3, A_DIRFD, A_PATH, A_VAL),
    PASS(newfstatat, 4, A_DIRFD, A_PATH, A_STAT, A_VAL),
    PASS(unlinkat, 3, A_DIRFD, A_PATH, A_VAL),
    PASS(readlinkat, 4, A_DIRFD, A_PATH, A_BUF, A_VAL),
    PASS(faccessat, 3, A_DIRFD, A_PATH, A_VAL),
    PASS(dup3, 3, A_FD, A_FD, A_VAL),
    PASS(pipe2, 2, A_FDPAIR, A_VAL),
    PASS(getrandom, 3, A_BUF, A_VAL, A_VAL),
    [SYS_execveat] = { "execveat", km_hc_execveat, 5, false, { A_DIRFD, A_PATH } },
    [505] = { "snapshot", km_hc_snapshot, 3, false, { A_VAL, A_VAL, A_VAL } },
};

/* Checks and translates one argument; returns 0 or -errno. */
static int64_t translate_arg(struct km *km, enum arg_kind kind, const uint64_t *a, int i, long *out)
{
    int err;
    void *p;

    switch (kind) {
    case A_VAL:
        *out = (long)a[i];
        return 0;
    case A_DIRFD:
        if ((int)a[i] == AT_FDCWD) {
            *out = AT_FDCWD;
            return 0;
        }
        /* fall through */
    case A_FD:
        *out = (long)a[i];
        return km_is_private_fd(km, (int)a[i]) ? -EBADF : 0;
    case A_PATH:
        if (!(*out = (long)km_gstr(km, a[i], &err)))
            return err;
        return 0;
    case A_BUF:
        p = km_gptr(km, a[i], a[i + 1]);
        break;
    case A_TS_OPT:
    case A_ITV_OPT:
        if (a[i] == 0) {
            *out = 0;
            return 0;
        }
        /* fall through */
    default:
        p = km_gptr(km, a[i], object_size[kind]);
        break;
    }
    *out = (long)p;
    return p ? 0 : -EFAULT;
}

static int64_t passthrough(struct km *km, unsigned nr, const struct hc_desc *d, const uint64_t *a)
{
    long x[6] = { 0 };
    for (int i = 0; i < d->nargs; i++) {
        int64_t err = translate_arg(km, (enum arg_kind)d->kind[i], a, i, &x[i]);
        if (err)
            return err;
    }
    return km_blocking_syscall(nr, x[0], x[1], x[2], x[3], x[4], x[5]);
}

static void trace_arg(char *buf, size_t size, struct km *km, enum arg_kind kind, uint64_t v)
{
    int err;
    const char *s;

    if (kind == A_FD || kind == A_DIRFD)
        snprintf(buf, size, "%d", (int)v);
    else if (kind == A_PATH && (s = km_gstr(km, v, &err)) != NULL)
        snprintf(buf, size, "\"%.64s\"", s);
    else
        snprintf(buf, size, "0x%llx", (unsigned long long)v);
}

static void trace_call(struct km *km, unsigned nr, const struct hc_desc *d, const uint64_t *a,
                       int64_t ret)
{
    char args[512] = "", one[96], name[24];
    const char *n = d->name;
    int nargs = n ? d->nargs : 6;

    if (!n) {
        snprintf(name, sizeof(name), "hypercall_%u", nr);
        n = name;
    }
    if (km->have_filter && regexec(&km->trace_filter, n, 0, NULL, 0) != 0)
        return;
    for (int i = 0; i < nargs; i++) {
        trace_arg(one, sizeof(one), km, n == d->name ? (enum arg_kind)d->kind[i] : A_VAL, a[i]);
        size_t len = strlen(args);
        snprintf(args + len, sizeof(args) - len, "%s%s", i ? ", " : "", one);
    }
    if (ret == KM_HC_NORET)
        km_trace(km, "hc %s(%s) returned to the interrupted context", n, args);
    else if (ret < 0 && ret >= -4095)
        km_trace(km, "hc %s(%s) = %lld (%s)", n, args, (long long)ret, strerrorname_np((int)-ret));
    else
        km_trace(km, "hc %s(%s) = %lld (0x%llx)", n, args, (long long)ret, (unsigned long long)ret);
}

bool km_hcall(struct km *km, unsigned nr)
{
    uint64_t slot, block[7];
    uint8_t *host;

    memcpy(&slot, km->mem + KM_PRIV_BASE + KM_PRIV_GS, sizeof(slot));
    if (!(host = km_gptr(km, slot, HC_BLOCK_SIZE))) {
        char why[160];
        snprintf(why, sizeof(why), "guest fault: hypercall %u with argument block 0x%llx outside "
                 "guest memory at RIP 0x%llx", nr, (unsigned long long)slot,
                 (unsigned long long)km_guest_rip(km));
        km_die(km, SIGSEGV, NULL, why);
    }
    memcpy(block, host, sizeof(block));

    const struct hc_desc *d = &hc_table[nr];
    int64_t ret = !d->name ? -ENOTSUP
                : d->fn ? d->fn(km, block + 1)
                : passthrough(km, nr, d, block + 1);
    if (ret != KM_HC_NORET)
        memcpy(host, &ret, sizeof(ret));
    if (ret == -EINTR)
        km_signals_interrupted(km, nr, d->restart);
    if (km->trace)
        trace_call(km, nr, d, block + 1, ret);
    return !(d->fn == hc_exit_group) && !km->stop;
}
