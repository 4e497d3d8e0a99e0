/*
 * Signals for the payload, as Linux gives them to a process.
 *
 * The guest's dispositions live in km->sig.act[]; KM's own host
 * dispositions follow them, so the host kernel does most of the work:
 *
 *   - a guest handler, or a default action that ends the process: a KM
 *     host handler catches the signal. It only records it and sets
 *     kvm_run.immediate_exit, which makes KVM_RUN return; blocking host
 *     syscalls made for the guest return EINTR because the handler has no
 *     SA_RESTART. The main loop then delivers it (km_signals_deliver): a
 *     Linux rt_sigframe on the guest stack, or death.
 *   - SIG_IGN, and defaults that ignore, stop or continue: the same host
 *     disposition does the same thing to KM, so KM never sees them.
 *   - the guest's blocked set is KM's own signal mask: blocked signals wait
 *     in the host kernel, and across execve (exec.c) the mask, pending
 *     signals and ignored dispositions carry over exactly as on Linux.
 *
 * Guest exceptions become SIGSEGV/SIGILL/SIGFPE/SIGTRAP/SIGBUS (vm.c builds
 * the km_fault) and go to a handler if the guest has one and has not
 * blocked the signal; otherwise, as for any default "core" or "term"
 * signal, the payload dies: km_die makes KM itself die of the signal.
 *
 * The frames themselves (rt_sigframe, rt_sigreturn, sigaltstack) are in
 * sigframe.c.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "km.h"
#include "ksignal.h"

/* KM's own handlers, set with the raw syscall so every signal 1..64 works alike. */
struct host_sigaction {
    void *handler;
    uint64_t flags;
    void (*restorer)(void);
    uint64_t mask;
};

void km_host_restorer(void);
__asm__(".text\n"
        ".globl km_host_restorer\n"
        "km_host_restorer:\n"
        "    movq $15, %rax\n"      /* rt_sigreturn */
        "    syscall\n"
        "    ud2\n");

volatile uint64_t km_sig_held;
volatile int km_sig_wake;           /* a signal came since the run loop last looked */
static siginfo_t held_info[KM_NSIG + 1];

/*
 * km_blocking_syscall(nr, a1..a6): the raw syscall (result or -errno) for
 * calls that may block on the guest's behalf. A signal caught after the
 * hypercall began but before the host call started would be missed by
 * that call (a read or a nanosleep would just go on), so, as musl does for
 * cancellation points, the check of km_sig_wake and the `syscall` form a
 * window [km_bsc_begin, km_bsc_end): a signal landing inside it makes the
 * handler resume at km_bsc_cancel, which returns -EINTR, as a signal during
 * the call does (the handler has no SA_RESTART). To the guest the call had
 * begun (it executed its `outl`), so that is Linux's answer too: EINTR, or
 * a restart for an SA_RESTART handler (hcall.c, km_signals_interrupted).
 */
long km_bsc_raw(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
extern const char km_bsc_begin[], km_bsc_end[], km_bsc_cancel[];
__asm__(".text\n"
        ".globl km_bsc_raw\n"
        "km_bsc_raw:\n"
        "    movq %rdi, %rax\n"
        "    movq %rsi, %rdi\n"
        "    movq %rdx, %rsi\n"
        "    movq %rcx, %rdx\n"
        "    movq %r8, %r10\n"
        "    movq %r9, %r8\n"
        "    movq 8(%rsp), %r9\n"
        "km_bsc_begin:\n"
        "    cmpl $0, km_sig_wake(%rip)\n"
        "    jne km_bsc_cancel\n"
        "    syscall\n"
        "km_bsc_end:\n"
        "    ret\n"
        "km_bsc_cancel:\n"
        "    movq $-4, %rax\n"          /* -EINTR */
        "    ret\n");

/*
 * A blocking call interrupted by KM_SIG_KICK (a snapshot request, mgt.c)
 * rather than by a guest signal: the guest must not notice. The snapshot
 * records the vCPU at the hypercall's `out` (the resumed instance re-issues
 * the call), and here the call is restarted; relative sleeps with the time
 * they had left, so the live original sleeps neither shorter nor longer.
 */
volatile unsigned km_kicks;

static bool kicked(unsigned before)
{
    if (before == km_kicks && !km_mgt_pending)
        return false;
    km_sig_wake = 0;        /* before the check: a guest signal from now on sets it again */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return !km_signals_ready(km_self);
}

long km_blocking_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
    struct timespec req, rem;
    long *reqp = NULL, *remp = NULL;
    void *guest_rem = NULL;

    if (nr == SYS_nanosleep || (nr == SYS_clock_nanosleep && !(a2 & TIMER_ABSTIME))) {
        reqp = nr == SYS_nanosleep ? &a1 : &a3;
        remp = nr == SYS_nanosleep ? &a2 : &a4;
        guest_rem = (void *)*remp;
        *remp = (long)&rem;
    }
    for (;;) {
        unsigned before = km_kicks;
        if (reqp)
            rem = *(struct timespec *)*reqp;    /* what is left if the call never starts */
        long r = km_bsc_raw(nr, a1, a2, a3, a4, a5, a6);
        if (r != -EINTR || !kicked(before)) {
            if (reqp && r == -EINTR && guest_rem)
                memcpy(guest_rem, &rem, sizeof(rem));
            return r;
        }
        km_mgt_serve(km_self, true);
        if (reqp) {
            req = rem;
            *reqp = (long)&req;
        }
    }
}

/* KM_SIG_KICK: out of KVM_RUN, or out of (or before) a blocking call; nothing else. */
static void on_kick(int sig, siginfo_t *si, void *ctx)
{
    int saved_errno = errno;
    (void)sig, (void)si;
    __atomic_fetch_add(&km_kicks, 1, __ATOMIC_SEQ_CST);
    km_sig_wake = 1;
    struct kvm_run *run = km_run_kick;
    if (run)
        run->immediate_exit = 1;
    greg_t *rip = &((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RIP];
    if (*rip >= (greg_t)km_bsc_begin && *rip < (greg_t)km_bsc_end)
        *rip = (greg_t)km_bsc_cancel;
    errno = saved_errno;
}

static long host_sigaction(int sig, const struct host_sigaction *new, struct host_sigaction *old);

/* Installs the kick handler and makes sure KM_SIG_KICK is never blocked on the host. */
int km_signals_kick_init(struct km *km)
{
    struct host_sigaction ha = {
        .handler = (void *)on_kick, .flags = K_SA_SIGINFO | K_SA_RESTORER,
        .restorer = km_host_restorer,
    };
    uint64_t one = BIT(KM_SIG_KICK);
    if (host_sigaction(KM_SIG_KICK, &ha, NULL) < 0)
        return KM_EXIT_SETUP;
    km_sig_guest_mask(km);
    syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &one, NULL, KSIGSET_SIZE);
    km->sig.host_mask &= ~one;
    return 0;
}

enum dfl { DFL_TERM, DFL_CORE, DFL_IGN, DFL_STOP, DFL_CONT };

static enum dfl default_action(int sig)
{
    switch (sig) {
    case SIGQUIT: case SIGILL: case SIGTRAP: case SIGABRT: case SIGBUS: case SIGFPE:
    case SIGSEGV: case SIGXCPU: case SIGXFSZ: case SIGSYS:
        return DFL_CORE;
    case SIGCHLD: case SIGURG: case SIGWINCH:
        return DFL_IGN;
    case SIGCONT:
        return DFL_CONT;
    case SIGSTOP: case SIGTSTP: case SIGTTIN: case SIGTTOU:
        return DFL_STOP;
    default:
        return DFL_TERM;
    }
}

static bool ends_process(int sig)
{
    enum dfl d = default_action(sig);
    return d == DFL_TERM || d == DFL_CORE;
}

static long host_sigaction(int sig, const struct host_sigaction *new, struct host_sigaction *old)
{
    return syscall(SYS_rt_sigaction, sig, new, old, KSIGSET_SIZE);
}

/* A fault in KM's own code (not one sent with kill): die of it like any program. */
static bool own_fault(int sig, const siginfo_t *si)
{
    return (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE ||
            sig == SIGTRAP || sig == SIGSYS) && si->si_code > 0;
}

static void on_host_signal(int sig, siginfo_t *si, void *ctx)
{
    int saved_errno = errno;
    if (own_fault(sig, si)) {
        /* Returning re-runs the faulting instruction, which now kills KM. */
        struct host_sigaction dfl = { .handler = SIG_DFL };
        host_sigaction(sig, &dfl, NULL);
    } else if (!(sig == SIGPIPE && km_writing_log)) {
        held_info[sig] = *si;
        __atomic_fetch_or(&km_sig_held, BIT(sig), __ATOMIC_SEQ_CST);
        km_sig_wake = 1;
        struct kvm_run *run = km_run_kick;
        if (run)
            run->immediate_exit = 1;
        greg_t *rip = &((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RIP];
        if (*rip >= (greg_t)km_bsc_begin && *rip < (greg_t)km_bsc_end)
            *rip = (greg_t)km_bsc_cancel;   /* the blocking call had not started */
    }
    errno = saved_errno;
}

void km_sig_set_host(int sig, uint64_t guest_handler)
{
    struct host_sigaction ha = { .flags = K_SA_RESTORER, .restorer = km_host_restorer };

    if (sig == SIGKILL || sig == SIGSTOP)
        return;
    if (guest_handler == K_SIG_IGN)
        ha.handler = SIG_IGN;
    else if (guest_handler == K_SIG_DFL && !ends_process(sig))
        ha.handler = SIG_DFL;
    else {
        ha.handler = (void *)on_host_signal;
        ha.flags |= K_SA_SIGINFO;   /* no SA_RESTART: blocking host calls must see EINTR */
    }
    host_sigaction(sig, &ha, NULL);
}

/* The guest's disposition; until the guest sets one, KM's inherited one (DFL or IGN). */
static struct km_sigaction *guest_act(struct km *km, int sig)
{
    struct km_sigaction *act = &km->sig.act[sig];
    if (!(km->sig.known & BIT(sig))) {
        struct host_sigaction old;
        memset(act, 0, sizeof(*act));
        if (host_sigaction(sig, NULL, &old) == 0 && old.handler == SIG_IGN)
            act->handler = K_SIG_IGN;
        km->sig.known |= BIT(sig);
    }
    return act;
}

/*
 * The guest's mask is KM's own, inherited over exec like a process's: read
 * from the host the first time it matters (each syscall costs at start).
 * Until then it is 0 here, which only km_signals_ready() sees: a signal
 * reaches KM's handler only if the host mask, the real one, let it through.
 */
uint64_t km_sig_guest_mask(struct km *km)
{
    if (!km->sig.mask_known) {
        uint64_t inherited = 0;
        syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &inherited, KSIGSET_SIZE);
        km->sig.mask = km->sig.host_mask = inherited & ~UNBLOCKABLE;
        km->sig.mask_known = true;
    }
    return km->sig.mask;
}

uint64_t km_signals_mask(struct km *km)
{
    return km_sig_guest_mask(km);
}

void km_sig_set_mask(struct km *km, uint64_t mask)
{
    km_sig_guest_mask(km);
    mask &= ~UNBLOCKABLE;
    km->sig.mask = mask;
    uint64_t host = mask & ~BIT(KM_SIG_KICK);      /* KM's own: never blocked */
    if (host != km->sig.host_mask) {
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &host, NULL, KSIGSET_SIZE);
        km->sig.host_mask = host;
    }
}

/*
 * KM's handler from the start for what operators and terminals send (TERM,
 * INT, HUP, QUIT: as pid 1 of a container KM would otherwise never see
 * them) and PIPE (KM's own log writes must not kill it). Every other signal
 * keeps its host disposition until the guest sets one: with the default
 * action, KM then dies of it directly, as it would after delivering it.
 * Each syscall is dear on nested hosts, and this keeps KM's start cheap.
 */
int km_signals_init(struct km *km)
{
    static const int early[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE };

    km->sig.alt_flags = SS_DISABLE;
    for (size_t i = 0; i < sizeof(early) / sizeof(early[0]); i++) {
        int sig = early[i];
        struct host_sigaction ha = {
            .handler = (void *)on_host_signal, .flags = K_SA_SIGINFO | K_SA_RESTORER,
            .restorer = km_host_restorer,
        }, old;
        if (host_sigaction(sig, &ha, &old) < 0)
            return KM_EXIT_SETUP;
        km->sig.known |= BIT(sig);
        if (old.handler == SIG_IGN) {       /* inherited, as a process inherits it over exec */
            km->sig.act[sig].handler = K_SIG_IGN;
            km_sig_set_host(sig, K_SIG_IGN);
        }
    }
    /* After the handlers, so pending signals this unblocks reach the guest. */
    if (km->opt.have_sigmask)
        km_sig_set_mask(km, km->opt.sigmask);
    return 0;
}

static bool has_handler(const struct km_sigaction *act)
{
    return act->handler != K_SIG_DFL && act->handler != K_SIG_IGN;
}

static void load_regs(struct km *km, struct kvm_regs *regs, bool *via_syscall, int sig)
{
    km_vcpu_sync(km);
    if (!km_get_regs(km, regs))
        km_die(km, sig, NULL, NULL);
    *via_syscall = km_sigframe_finish_trampoline(km, regs);
}

void km_signals_deliver(struct km *km)
{
    struct kvm_regs regs;
    bool have_regs = false, via_syscall = false;
    uint64_t ready;


    while ((ready = km_sig_held & ~km->sig.mask) != 0) {
        int sig = __builtin_ctzll(ready) + 1;
        siginfo_t info = held_info[sig];
        __atomic_fetch_and(&km_sig_held, ~BIT(sig), __ATOMIC_SEQ_CST);
        struct km_sigaction *act = guest_act(km, sig);

        if (act->handler == K_SIG_IGN)
            continue;
        if (act->handler == K_SIG_DFL) {
            enum dfl d = default_action(sig);
            if (d == DFL_STOP)
                kill(getpid(), SIGSTOP);
            if (d == DFL_IGN || d == DFL_CONT || d == DFL_STOP)
                continue;
            km_die(km, sig, have_regs ? &regs : NULL, NULL);
        }
        if (!have_regs) {
            load_regs(km, &regs, &via_syscall, sig);
            have_regs = true;
        }
        /* The interrupted hypercall: EINTR, or restarted if the handler asks (SA_RESTART). */
        if (km->sig.intr == INTR_RESTARTABLE && (act->flags & K_SA_RESTART))
            km_sigframe_restart(km, &regs, via_syscall);
        km->sig.intr = INTR_NONE;
        if (!km_sigframe_push(km, sig, act, &info, &regs, NULL)) {
            char why[128];
            snprintf(why, sizeof(why), "cannot deliver signal %d to the payload "
                     "(no SA_RESTORER, or no room on its stack at 0x%llx)", sig,
                     (unsigned long long)regs.rsp);
            km_die(km, SIGSEGV, &regs, why);
        }
    }
    if (km->sig.in_suspend) {           /* woken without a handler: back to the old mask */
        km->sig.in_suspend = false;
        km_sig_set_mask(km, km->sig.suspend_restore);
    }
    if (have_regs && !km_set_regs(km, &regs))
        km_die(km, SIGSEGV, &regs, "cannot set the vCPU's registers for a signal handler");
}

void km_signal_fault(struct km *km, struct kvm_regs *regs, const struct km_fault *f)
{
    int sig = f->signo;
    struct km_sigaction *act = guest_act(km, sig);

    /* As Linux's force_sig: a blocked or ignored fault signal kills. */
    if (f->resumable && has_handler(act) && !(km_sig_guest_mask(km) & BIT(sig))) {
        siginfo_t info;
        memset(&info, 0, sizeof(info));
        info.si_signo = sig;
        info.si_code = f->code;
        info.si_addr = (void *)(uintptr_t)f->addr;
        if (km_sigframe_push(km, sig, act, &info, regs, f) && km_set_regs(km, regs))
            return;
        char why[sizeof(f->what) + 64];
        snprintf(why, sizeof(why), "%s (its handler cannot be run)", f->what);
        km_die(km, SIGSEGV, regs, why);
    }
    km_die(km, sig, regs, f->what);
}

static void sleep_seconds(int seconds)
{
    struct timespec left = { seconds, 0 };
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &left, &left) == EINTR)
        ;
}

/*
 * The payload died of sig: KM dies of it too, so whoever waits for KM sees
 * what Linux would show for the payload. As pid 1 of a pid namespace the
 * kernel ignores a signal KM sends itself; then, like Kontain's KM, it says
 * so, waits 2 s and aborts (which ends in SIGSEGV there: status 139).
 */
void km_die(struct km *km, int sig, const struct kvm_regs *regs, const char *report)
{
    char note[4300] = "";
    struct kvm_regs r;
    struct host_sigaction dfl = { .handler = SIG_DFL };
    uint64_t one = BIT(sig);

    if (!regs && km->vcpu_fd >= 0) {
        km_vcpu_sync(km);
        if (km_get_regs(km, &r)) {
            km_sigframe_finish_trampoline(km, &r);
            regs = &r;
        }
    }
    if (default_action(sig) == DFL_CORE && regs)
        km_write_core(km, sig, regs, note, sizeof(note));
    if (report)
        km_err(km, "%s%s", report, note);
    else if (note[0])
        km_err(km, "payload killed by signal %d (SIG%s)%s", sig, sigabbrev_np(sig), note);
    if (km->trace)
        km_trace(km, "payload killed by signal %d (SIG%s): KM raises it on itself", sig,
                 sigabbrev_np(sig));

    km_mgt_cleanup();
    /* KM's own core would be a copy of the guest's memory: the core above is the useful one. */
    prctl(PR_SET_DUMPABLE, 0);
    host_sigaction(sig, &dfl, NULL);
    syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &one, NULL, KSIGSET_SIZE);
    syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);

    km_err(km, "signal %d didn't terminate this instance of km?", sig);
    sleep_seconds(2);
    host_sigaction(SIGABRT, &dfl, NULL);
    abort();
}

/*
 * Before KM re-executes itself: signals caught but not delivered yet go
 * back to the host kernel, blocked, so they are pending in the new KM as
 * they would be in the new program. Everything stays blocked until the new
 * KM has its handlers; --sigmask (exec.c) then restores the guest's mask.
 */
void km_signals_before_exec(struct km *km)
{
    uint64_t all = ~0ULL;
    km_sig_guest_mask(km);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, KSIGSET_SIZE);
    km->sig.host_mask = all & ~UNBLOCKABLE;
    uint64_t held = __atomic_exchange_n(&km_sig_held, 0, __ATOMIC_SEQ_CST);
    for (int sig = 1; sig <= KM_NSIG; sig++)
        if (held & BIT(sig))
            syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
}

/* The execve failed after km_signals_before_exec: back to the guest's mask. */
void km_signals_after_failed_exec(struct km *km)
{
    km->sig.host_mask = ~0ULL;
    km_sig_set_mask(km, km_sig_guest_mask(km));
}

/* ---- hypercalls --------------------------------------------------------- */

int64_t km_hc_rt_sigaction(struct km *km, const uint64_t *a)
{
    int sig = (int)a[0];
    struct km_sigaction new;
    void *in = NULL, *out = NULL;

    /* KM_SIG_KICK is KM's (libcs reserve it too: glibc SIGSETXID, musl SIGCANCEL). */
    if (sig < 1 || sig > KM_NSIG || sig == KM_SIG_KICK || a[3] != KSIGSET_SIZE)
        return -EINVAL;
    if (a[1] && !(in = km_gptr(km, a[1], sizeof(new))))
        return -EFAULT;
    if (a[2] && !(out = km_gptr(km, a[2], sizeof(new))))
        return -EFAULT;
    if (in && (sig == SIGKILL || sig == SIGSTOP))
        return -EINVAL;
    struct km_sigaction *act = guest_act(km, sig);
    if (in)
        memcpy(&new, in, sizeof(new));      /* before out: they may be the same memory */
    if (out)
        memcpy(out, act, sizeof(*act));
    if (in) {
        new.mask &= ~UNBLOCKABLE;
        *act = new;
        km_sig_set_host(sig, act->handler);
        /* Linux discards a pending signal that is now ignored. */
        if (act->handler == K_SIG_IGN || (act->handler == K_SIG_DFL && !ends_process(sig)))
            __atomic_fetch_and(&km_sig_held, ~BIT(sig), __ATOMIC_SEQ_CST);
    }
    return 0;
}

int64_t km_hc_rt_sigprocmask(struct km *km, const uint64_t *a)
{
    uint64_t set, mask = km_sig_guest_mask(km);
    void *in = NULL, *out = NULL;

    if (a[3] != KSIGSET_SIZE)
        return -EINVAL;
    if (a[1] && !(in = km_gptr(km, a[1], sizeof(set))))
        return -EFAULT;
    if (a[2] && !(out = km_gptr(km, a[2], sizeof(set))))
        return -EFAULT;
    if (in) {
        memcpy(&set, in, sizeof(set));
        switch (a[0]) {
        case SIG_BLOCK: mask |= set; break;
        case SIG_UNBLOCK: mask &= ~set; break;
        case SIG_SETMASK: mask = set; break;
        default: return -EINVAL;
        }
    }
    if (out)
        memcpy(out, &km->sig.mask, sizeof(km->sig.mask));
    if (in)
        km_sig_set_mask(km, mask);     /* newly unblocked held signals go out after this call */
    return 0;
}

int64_t km_hc_rt_sigpending(struct km *km, const uint64_t *a)
{
    uint64_t pending = 0;
    void *out;

    if (a[1] > KSIGSET_SIZE)
        return -EINVAL;
    if (!(out = km_gptr(km, a[0], a[1])))
        return -EFAULT;
    syscall(SYS_rt_sigpending, &pending, KSIGSET_SIZE);
    pending = (pending | km_sig_held) & km_sig_guest_mask(km);
    memcpy(out, &pending, a[1]);
    return 0;
}

int64_t km_hc_rt_sigsuspend(struct km *km, const uint64_t *a)
{
    uint64_t wait_mask;
    const void *in;

    if (a[1] != KSIGSET_SIZE)
        return -EINVAL;
    if (!(in = km_gptr(km, a[0], sizeof(wait_mask))))
        return -EFAULT;
    memcpy(&wait_mask, in, sizeof(wait_mask));
    wait_mask &= ~UNBLOCKABLE;
    km->sig.suspend_restore = km_sig_guest_mask(km);
    km->sig.in_suspend = true;
    km->sig.mask = wait_mask;
    if (!km_signals_ready(km)) {
        /* The host restores KM's mask when it returns; the guest's is settled on delivery. */
        uint64_t host_wait = wait_mask & ~BIT(KM_SIG_KICK);   /* snapshot requests get through */
        km_blocking_syscall(SYS_rt_sigsuspend, (long)&host_wait, KSIGSET_SIZE, 0, 0, 0, 0);
    }
    return -EINTR;
}

/*
 * kill/tkill/tgkill pass through; one the guest aims at itself (raise,
 * abort) first makes sure KM handles that signal, so the payload's default
 * action, core file included, happens as for any other delivered signal.
 */
static void take_signal(struct km *km, int sig)
{
    if (sig >= 1 && sig <= KM_NSIG && !(km->sig.known & BIT(sig)))
        km_sig_set_host(sig, guest_act(km, sig)->handler);
}

static bool is_self(pid_t pid)
{
    return pid == 0 || pid == -1 || pid == getpid() || pid == -getpgrp();
}

int64_t km_hc_kill(struct km *km, const uint64_t *a)
{
    if (is_self((pid_t)a[0]))
        take_signal(km, (int)a[1]);
    return kill((pid_t)a[0], (int)a[1]) < 0 ? -errno : 0;
}

int64_t km_hc_tkill(struct km *km, const uint64_t *a)
{
    if ((pid_t)a[0] == getpid())
        take_signal(km, (int)a[1]);
    return syscall(SYS_tkill, (pid_t)a[0], (int)a[1]) < 0 ? -errno : 0;
}

int64_t km_hc_tgkill(struct km *km, const uint64_t *a)
{
    if ((pid_t)a[0] == getpid())
        take_signal(km, (int)a[2]);
    return syscall(SYS_tgkill, (pid_t)a[0], (pid_t)a[1], (int)a[2]) < 0 ? -errno : 0;
}

/* For hcall.c: a hypercall's host call was interrupted by a signal KM caught. */
void km_signals_interrupted(struct km *km, unsigned nr, bool restartable)
{
    if (!km_sig_held)
        return;
    km->sig.intr = restartable ? INTR_RESTARTABLE : INTR_EINTR;
    km->sig.intr_nr = nr;
}

/* The run loop is about to look for signals: later ones wake blocking calls again. */
void km_signals_look(void)
{
    km_sig_wake = 0;
}

void km_signals_settle(struct km *km)
{
    km->sig.intr = INTR_NONE;
}
