/*
 * Signals. KM delivers them in the guest with Linux's frame; the kernel
 * interface wants SA_RESTORER and a restorer that calls rt_sigreturn, which
 * sigaction always supplies (__krunc_sigreturn, sigreturn.S).
 */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

void __krunc_sigreturn(void) __attribute__((visibility("hidden")));

/* The kernel's struct sigaction (x86-64). */
struct k_sigaction {
    void *handler;
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

#define SIGSET_BYTES 8

int sigaction(int sig, const struct sigaction *__krunc_restrict act,
              struct sigaction *__krunc_restrict old)
{
    struct k_sigaction k, ko;

    if (act) {
        k.handler = (void *)act->sa_handler;
        /* Through unsigned: SA_RESETHAND is bit 31 and must not sign-extend. */
        k.flags = (unsigned int)act->sa_flags | SA_RESTORER;
        k.restorer = __krunc_sigreturn;
        k.mask = act->sa_mask.__bits[0];
    }
    long r = SYS4(NR_rt_sigaction, sig, act ? &k : 0, old ? &ko : 0, SIGSET_BYTES);
    if (r == 0 && old) {
        memset(old, 0, sizeof(*old));
        old->sa_handler = (void (*)(int))ko.handler;
        old->sa_flags = (int)(unsigned int)(ko.flags & ~(unsigned long)SA_RESTORER);
        old->sa_mask.__bits[0] = ko.mask;
    }
    return (int)r;
}

/* BSD semantics, as glibc's signal(): the handler stays, interrupted calls restart. */
sighandler_t signal(int sig, sighandler_t handler)
{
    struct sigaction sa, old;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    sigaddset(&sa.sa_mask, sig);
    if (sigaction(sig, &sa, &old) < 0)
        return SIG_ERR;
    return old.sa_handler;
}

int kill(pid_t pid, int sig)
{
    return (int)SYS2(NR_kill, pid, sig);
}

/* One thread: the signal is delivered before kill's hypercall returns. */
int raise(int sig)
{
    return kill(getpid(), sig);
}

static int bad_signal(int sig)
{
    if (sig < 1 || sig >= NSIG) {
        errno = EINVAL;
        return 1;
    }
    return 0;
}

int sigemptyset(sigset_t *set)
{
    set->__bits[0] = 0;
    return 0;
}

int sigfillset(sigset_t *set)
{
    set->__bits[0] = ~0UL;
    return 0;
}

int sigaddset(sigset_t *set, int sig)
{
    if (bad_signal(sig))
        return -1;
    set->__bits[0] |= 1UL << (sig - 1);
    return 0;
}

int sigdelset(sigset_t *set, int sig)
{
    if (bad_signal(sig))
        return -1;
    set->__bits[0] &= ~(1UL << (sig - 1));
    return 0;
}

int sigismember(const sigset_t *set, int sig)
{
    if (bad_signal(sig))
        return -1;
    return (set->__bits[0] >> (sig - 1)) & 1;
}

int sigprocmask(int how, const sigset_t *__krunc_restrict set, sigset_t *__krunc_restrict old)
{
    return (int)SYS4(NR_rt_sigprocmask, how, set, old, SIGSET_BYTES);
}

int sigpending(sigset_t *set)
{
    return (int)SYS2(NR_rt_sigpending, set, SIGSET_BYTES);
}

int sigsuspend(const sigset_t *mask)
{
    return (int)SYS2(NR_rt_sigsuspend, mask, SIGSET_BYTES);
}

int sigaltstack(const stack_t *__krunc_restrict ss, stack_t *__krunc_restrict old)
{
    return (int)SYS2(NR_sigaltstack, ss, old);
}
