/*
 * signals [MODE]: checks KM's signal delivery against Linux's rules, with
 * the kernel's own struct definitions (asm/ucontext.h, asm/siginfo.h).
 * Without MODE it prints one "key=value" line per check for
 * tests/test_km.py. Modes that end the payload:
 *   spin           SIGTERM handler, prints "spinning", loops without hypercalls;
 *                  the handler makes it print "got SIGTERM while busy", exit 0
 *   die SIG        kill(getpid(), SIG) with the default action
 *   blocked-fault  a SIGSEGV handler, SIGSEGV blocked, then a fault: Linux kills
 *   no-restorer    a handler without SA_RESTORER: Linux kills with SIGSEGV
 */
#include "km_rt.h"

#define BIT RT_SIGBIT

static volatile int hits[65];
static volatile long last_signo, last_code, last_pid, last_errno;
static volatile uint64_t seen_mask, seen_uc_mask, seen_sp, order[4];
static volatile int norder;
__attribute__((used)) static volatile uint64_t entry_rsp;

static const char *ok(int cond)
{
    return cond ? "ok" : "bad";
}

static uint64_t current_mask(void)
{
    uint64_t m = 0;
    rt_sigprocmask(SIG_BLOCK, 0, &m);
    return m;
}


/* A restorer the way glibc and musl write it: rt_sigreturn with `syscall`. */
void sys_restore(void);
__asm__(".text\n"
        "sys_restore:\n"
        "    movl $15, %eax\n"
        "    syscall\n"
        "    ud2\n");

static long install(int sig, void *handler, unsigned long flags, uint64_t mask, void (*restorer)(void))
{
    struct rt_sigaction sa = { handler, flags | SA_SIGINFO | SA_RESTORER, restorer, mask };
    return rt_sigaction(sig, &sa, 0);
}

__attribute__((used)) static void record(int sig, siginfo_t *info, struct ucontext *uc)
{
    hits[sig]++;
    last_signo = info->si_signo;
    last_code = info->si_code;
    last_pid = info->si_pid;
    seen_mask = current_mask();
    seen_uc_mask = uc->uc_sigmask;
    volatile int here;
    seen_sp = (uint64_t)&here;
    if (norder < 4)
        order[norder++] = (uint64_t)sig;
}

/* Records %rsp at the handler's first instruction, then is `record`. */
void aligned_entry(int, siginfo_t *, struct ucontext *);
__asm__(".text\n"
        "aligned_entry:\n"
        "    movq %rsp, entry_rsp(%rip)\n"
        "    jmp record\n");

static void basics(void)
{
    long pid = rt_getpid();
    install(SIGUSR1, aligned_entry, 0, 0, rt_restore);
    uint64_t before = current_mask();
    long r = rt_kill((int)pid, SIGUSR1);
    rt_printf("basic=%s\n", ok(r == 0 && hits[SIGUSR1] == 1));
    rt_printf("info=%s\n", ok(last_signo == SIGUSR1 && last_code == SI_USER && last_pid == pid));
    rt_printf("aligned=%s\n", ok(entry_rsp && (entry_rsp + 8) % 16 == 0));
    rt_printf("blocked_in_handler=%s\n", ok(seen_mask == (before | BIT(SIGUSR1))));
    rt_printf("uc_sigmask=%s\n", ok(seen_uc_mask == before));
    rt_printf("mask_restored=%s\n", ok(current_mask() == before));

    install(SIGUSR2, record, 0, 0, sys_restore);
    r = rt_syscall_insn3(__NR_kill, pid, SIGUSR2, 0);
    rt_printf("syscall_restorer=%s\n", ok(r == 0 && hits[SIGUSR2] == 1));

    uint64_t usr1 = BIT(SIGUSR1), pending = 0;
    rt_sigprocmask(SIG_BLOCK, &usr1, 0);
    rt_kill((int)pid, SIGUSR1);
    int held = hits[SIGUSR1] == 1;
    km_syscall(__NR_rt_sigpending, (uint64_t)&pending, 8, 0, 0, 0, 0);
    rt_printf("blocked_stays_pending=%s\n", ok(held && (pending & usr1)));
    rt_sigprocmask(SIG_UNBLOCK, &usr1, 0);
    rt_printf("delivered_on_unblock=%s\n", ok(hits[SIGUSR1] == 2));

    install(SIGUSR2, record, 0, BIT(SIGWINCH), rt_restore);
    rt_kill((int)pid, SIGUSR2);
    rt_printf("sa_mask=%s\n", ok((seen_mask & BIT(SIGWINCH)) && (seen_mask & BIT(SIGUSR2))));
    install(SIGUSR2, record, SA_NODEFER, 0, rt_restore);
    rt_kill((int)pid, SIGUSR2);
    rt_printf("nodefer=%s\n", ok(!(seen_mask & BIT(SIGUSR2))));
    install(SIGUSR2, record, SA_RESETHAND, 0, rt_restore);
    rt_kill((int)pid, SIGUSR2);
    struct rt_sigaction old;
    rt_sigaction(SIGUSR2, 0, &old);
    rt_printf("resethand=%s\n", ok(hits[SIGUSR2] == 4 && old.handler == SIG_DFL));

    struct rt_sigaction ign = { SIG_IGN, 0, 0, 0 };
    rt_sigaction(SIGUSR1, &ign, 0);
    rt_kill((int)pid, SIGUSR1);
    rt_kill((int)pid, SIGCHLD);     /* default: ignore */
    rt_kill((int)pid, SIGWINCH);
    rt_printf("ignored=%s\n", ok(hits[SIGUSR1] == 2));

    rt_printf("sigaction_kill=%s\n", rt_errname(install(SIGKILL, record, 0, 0, rt_restore)));
    rt_printf("sigaction_65=%s\n", rt_errname(install(65, record, 0, 0, rt_restore)));
}

static void raise_usr2(int sig, siginfo_t *info, struct ucontext *uc)
{
    record(sig, info, uc);
    rt_kill((int)rt_getpid(), SIGUSR2);
}

static void nesting(void)
{
    norder = 0;
    install(SIGUSR1, raise_usr2, 0, 0, rt_restore);
    install(SIGUSR2, record, 0, 0, rt_restore);
    rt_kill((int)rt_getpid(), SIGUSR1);
    rt_printf("nested=%s\n", ok(norder == 2 && order[0] == SIGUSR1 && order[1] == SIGUSR2));

    /* rt_sigsuspend: wait with a mask that lets a pending signal in. */
    uint64_t usr1 = BIT(SIGUSR1), none = 0;
    install(SIGUSR1, record, 0, 0, rt_restore);
    rt_sigprocmask(SIG_BLOCK, &usr1, 0);
    int before = hits[SIGUSR1];
    rt_kill((int)rt_getpid(), SIGUSR1);
    long r = km_syscall(__NR_rt_sigsuspend, (uint64_t)&none, 8, 0, 0, 0, 0);
    rt_printf("sigsuspend=%s\n", ok(r == -EINTR && hits[SIGUSR1] == before + 1 &&
                                    seen_mask == usr1 && current_mask() == usr1));
    rt_sigprocmask(SIG_UNBLOCK, &usr1, 0);
}

/* ---- guest faults with handlers ------------------------------------------ */

static volatile int skip;
static volatile long f_code, f_trapno;
static volatile uint64_t f_addr, f_cr2, f_rip;

static void fixup(int sig, siginfo_t *info, struct ucontext *uc)
{
    hits[sig]++;
    f_code = info->si_code;
    f_addr = (uint64_t)info->si_addr;
    f_trapno = (long)uc->uc_mcontext.trapno;
    f_cr2 = uc->uc_mcontext.cr2;
    f_rip = uc->uc_mcontext.rip;
    uc->uc_mcontext.rip += (uint64_t)skip;      /* past the faulting instruction */
    uc->uc_mcontext.rax = 42;
}

static void faults(void)
{
    for (int sig = 1; sig < 32; sig++)
        if (sig == SIGSEGV || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP)
            install(sig, fixup, 0, 0, rt_restore);

    /* A read of address 8 (3 bytes: 48 8b 03); callee-saved registers must survive. */
    register long r12 __asm__("r12") = 0x1212, r13 __asm__("r13") = 0x1313;
    register long r14 __asm__("r14") = 0x1414, r15 __asm__("r15") = 0x1515;
    long out;
    skip = 3;
    __asm__ volatile("movq (%%rbx), %%rax"
                     : "=a"(out), "+r"(r12), "+r"(r13), "+r"(r14), "+r"(r15)
                     : "b"(8UL) : "memory");
    rt_printf("segv_handler=%s\n", ok(out == 42 && hits[SIGSEGV] == 1 && f_code == SEGV_MAPERR &&
                                      f_addr == 8 && f_cr2 == 8 && f_trapno == 14));
    rt_printf("fault_context=%s\n", ok(r12 == 0x1212 && r13 == 0x1313 && r14 == 0x1414 &&
                                       r15 == 0x1515));
    skip = 2;
    __asm__ volatile("ud2" : "=a"(out) :: "memory");
    rt_printf("ill_handler=%s\n", ok(out == 42 && f_code == ILL_ILLOPN && f_addr == f_rip &&
                                     f_trapno == 6));
    __asm__ volatile("xorl %%ecx, %%ecx\n\tdivl %%ecx" : "=a"(out) :: "ecx", "edx", "memory");
    rt_printf("fpe_handler=%s\n", ok(out == 42 && f_code == FPE_INTDIV && f_trapno == 0));
    skip = 0;
    __asm__ volatile("int3" : "=a"(out) :: "memory");
    rt_printf("trap_handler=%s\n", ok(out == 42 && hits[SIGTRAP] == 1 && f_trapno == 3));
}

/*
 * %gs:0 holds the hypercall block between its store and the `outl`; a
 * handler running in between (here: SIGTRAP from int3) makes hypercalls of
 * its own. KM must give the interrupted code its %gs:0 back.
 */
static void talk(int sig, siginfo_t *info, struct ucontext *uc)
{
    (void)info, (void)uc;
    hits[sig]++;
    rt_printf("trap handler talking\n");
}

static void gs_slot(void)
{
    static const char msg[] = "gs_slot=ok\n";
    km_hc_args_t args = { 0, 1, (uint64_t)msg, sizeof(msg) - 1, 0, 0, 0 };
    install(SIGTRAP, talk, 0, 0, rt_restore);
    __asm__ volatile("movq %0, %%gs:0\n\tint3\n\toutl %%eax, %%dx"
                     :: "r"(&args), "d"((uint16_t)(0x8000 + __NR_write)), "a"(0) : "memory");
    if (args.hc_ret != sizeof(msg) - 1)
        rt_printf("gs_slot=bad\n");
}

/* ---- interrupted calls ------------------------------------------------------ */

static int pipefd[2];

static void feed(int sig, siginfo_t *info, void *uc)
{
    (void)info, (void)uc;
    hits[sig]++;
    char c = 'x';
    rt_write(pipefd[1], &c, 1);
}

static void timer(long usec)
{
    struct __kernel_old_itimerval it = { .it_value = { 0, usec } };
    rt_setitimer(ITIMER_REAL, &it, 0);
}

/* A read from an empty pipe that SIGALRM interrupts; the handler feeds the pipe. */
static long timed_read(unsigned long flags, int via_syscall)
{
    char c;
    install(SIGALRM, feed, flags, 0, via_syscall ? sys_restore : rt_restore);
    timer(30000);
    long n = via_syscall ? rt_syscall_insn3(__NR_read, pipefd[0], (long)&c, 1) : rt_read(pipefd[0], &c, 1);
    if (n == -EINTR)
        rt_read(pipefd[0], &c, 1);
    return n;
}

static void interrupted(void)
{
    rt_pipe(pipefd);
    rt_printf("restart=%ld\n", timed_read(SA_RESTART, 0));
    rt_printf("restart_syscall=%ld\n", timed_read(SA_RESTART, 1));
    rt_printf("no_restart=%s\n", rt_errname(timed_read(0, 0)));
    rt_printf("no_restart_syscall=%s\n", rt_errname(timed_read(0, 1)));

    /* nanosleep is never restarted after a handler; it reports the time left. */
    install(SIGALRM, record, SA_RESTART, 0, rt_restore);
    timer(30000);
    struct __kernel_timespec ts = { 10, 0 }, rem = { 0, 0 };
    long r = rt_nanosleep(&ts, &rem);
    rt_printf("nanosleep=%s\n", r == -EINTR ? ok(rem.tv_sec >= 8) : rt_errname(r));
}

/* ---- sigaltstack ---------------------------------------------------------- */

static uint8_t altstack[16384] __attribute__((aligned(16)));
static volatile int alt_flags_in_handler;

static void on_alt(int sig, siginfo_t *info, struct ucontext *uc)
{
    stack_t now;
    record(sig, info, uc);
    km_syscall(__NR_sigaltstack, 0, (uint64_t)&now, 0, 0, 0, 0);
    alt_flags_in_handler = now.ss_flags;
}

static void alternate_stack(void)
{
    stack_t ss = { .ss_sp = altstack, .ss_flags = 0, .ss_size = sizeof(altstack) }, old;
    long r = km_syscall(__NR_sigaltstack, (uint64_t)&ss, 0, 0, 0, 0, 0);
    install(SIGUSR1, on_alt, SA_ONSTACK, 0, rt_restore);
    rt_kill((int)rt_getpid(), SIGUSR1);
    uint64_t lo = (uint64_t)altstack, hi = lo + sizeof(altstack);
    rt_printf("altstack=%s\n", ok(r == 0 && seen_sp > lo && seen_sp < hi &&
                                  alt_flags_in_handler == SS_ONSTACK));
    km_syscall(__NR_sigaltstack, 0, (uint64_t)&old, 0, 0, 0, 0);
    rt_printf("altstack_after=%s\n", ok(old.ss_flags == 0 && old.ss_size == sizeof(altstack)));
    ss.ss_size = 100;
    rt_printf("altstack_small=%s\n",
              rt_errname(km_syscall(__NR_sigaltstack, (uint64_t)&ss, 0, 0, 0, 0, 0)));
}

/* ---- modes that end the payload ------------------------------------------- */

static volatile int got_term;

static void on_term(int sig, siginfo_t *info, void *uc)
{
    (void)sig, (void)info, (void)uc;
    got_term = 1;
}

static int spin(void)
{
    install(SIGTERM, on_term, 0, 0, rt_restore);
    rt_printf("spinning\n");
    while (!got_term)
        __asm__ volatile("pause");
    rt_printf("got SIGTERM while busy\n");
    return 0;
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    if (argc == 2 && !rt_strcmp(argv[1], "spin"))
        return spin();
    if (argc == 3 && !rt_strcmp(argv[1], "die")) {
        long sig;
        if (rt_parse_long(argv[2], &sig) == 0)
            rt_kill((int)rt_getpid(), (int)sig);
        rt_printf("signals: still alive after signal %s\n", argv[2]);
        return 1;
    }
    if (argc == 2 && !rt_strcmp(argv[1], "blocked-fault")) {
        uint64_t segv = BIT(SIGSEGV);
        install(SIGSEGV, fixup, 0, 0, rt_restore);
        rt_sigprocmask(SIG_BLOCK, &segv, 0);
        __asm__ volatile("movq (%%rbx), %%rax" ::"b"(8UL) : "rax", "memory");
        rt_printf("signals: survived a blocked SIGSEGV\n");
        return 1;
    }
    if (argc == 2 && !rt_strcmp(argv[1], "no-restorer")) {
        struct rt_sigaction sa = { record, SA_SIGINFO, 0, 0 };
        rt_sigaction(SIGUSR1, &sa, 0);
        rt_kill((int)rt_getpid(), SIGUSR1);
        rt_printf("signals: handler ran without a restorer\n");
        return 1;
    }
    basics();
    nesting();
    faults();
    gs_slot();
    interrupted();
    alternate_stack();
    return 0;
}
