/*
 * <signal.h>: Linux signals, delivered by KM inside the guest. Handlers
 * run on the payload's stack (or a sigaltstack); sigaction always installs
 * the library's restorer (rt_sigreturn as a hypercall), which x86-64
 * requires. sigset_t holds the kernel's 64 signals.
 */
#ifndef _KRUNC_SIGNAL_H
#define _KRUNC_SIGNAL_H

#include <bits/krunc.h>

__KRUNC_BEGIN

typedef int sig_atomic_t;
typedef struct {
    unsigned long __bits[1];
} sigset_t;
typedef void (*sighandler_t)(int);

#define SIG_ERR ((sighandler_t)-1)
#define SIG_DFL ((sighandler_t)0)
#define SIG_IGN ((sighandler_t)1)

#define SIGHUP 1
#define SIGINT 2
#define SIGQUIT 3
#define SIGILL 4
#define SIGTRAP 5
#define SIGABRT 6
#define SIGIOT SIGABRT
#define SIGBUS 7
#define SIGFPE 8
#define SIGKILL 9
#define SIGUSR1 10
#define SIGSEGV 11
#define SIGUSR2 12
#define SIGPIPE 13
#define SIGALRM 14
#define SIGTERM 15
#define SIGSTKFLT 16
#define SIGCHLD 17
#define SIGCONT 18
#define SIGSTOP 19
#define SIGTSTP 20
#define SIGTTIN 21
#define SIGTTOU 22
#define SIGURG 23
#define SIGXCPU 24
#define SIGXFSZ 25
#define SIGVTALRM 26
#define SIGPROF 27
#define SIGWINCH 28
#define SIGIO 29
#define SIGPOLL SIGIO
#define SIGPWR 30
#define SIGSYS 31
#define SIGRTMIN 32     /* no threads, so none reserved for them */
#define SIGRTMAX 64
#define NSIG 65
#define _NSIG NSIG

#define SA_NOCLDSTOP 0x00000001
#define SA_NOCLDWAIT 0x00000002
#define SA_SIGINFO   0x00000004
#define SA_RESTORER  0x04000000
#define SA_ONSTACK   0x08000000
#define SA_RESTART   0x10000000
#define SA_NODEFER   0x40000000
#define SA_RESETHAND 0x80000000
#define SA_NOMASK    SA_NODEFER
#define SA_ONESHOT   SA_RESETHAND

#define SIG_BLOCK 0
#define SIG_UNBLOCK 1
#define SIG_SETMASK 2

union sigval {
    int sival_int;
    void *sival_ptr;
};

/* The kernel's siginfo (128 bytes); the union starts at offset 16. */
typedef struct {
    int si_signo;
    int si_errno;
    int si_code;
    union {
        char __pad[128 - 16];
        struct {
            pid_t __pid;
            uid_t __uid;
            union {
                union sigval __value;
                struct {
                    int __status;
                    clock_t __utime, __stime;
                } __chld;
            } __u;
        } __proc;
        struct {
            int __tid, __overrun;
            union sigval __value;
        } __timer;
        struct {
            void *__addr;
            short __addr_lsb;
        } __fault;
        struct {
            long __band;
            int __fd;
        } __poll;
    } __si;
} siginfo_t;

#define si_pid __si.__proc.__pid
#define si_uid __si.__proc.__uid
#define si_value __si.__proc.__u.__value
#define si_int si_value.sival_int
#define si_ptr si_value.sival_ptr
#define si_status __si.__proc.__u.__chld.__status
#define si_utime __si.__proc.__u.__chld.__utime
#define si_stime __si.__proc.__u.__chld.__stime
#define si_timerid __si.__timer.__tid
#define si_overrun __si.__timer.__overrun
#define si_addr __si.__fault.__addr
#define si_addr_lsb __si.__fault.__addr_lsb
#define si_band __si.__poll.__band
#define si_fd __si.__poll.__fd

#define SI_USER 0
#define SI_KERNEL 0x80
#define SI_QUEUE (-1)
#define SI_TIMER (-2)
#define SI_MESGQ (-3)
#define SI_ASYNCIO (-4)
#define SI_SIGIO (-5)
#define SI_TKILL (-6)
#define ILL_ILLOPC 1
#define ILL_ILLOPN 2
#define ILL_ILLADR 3
#define ILL_ILLTRP 4
#define ILL_PRVOPC 5
#define ILL_PRVREG 6
#define ILL_COPROC 7
#define ILL_BADSTK 8
#define FPE_INTDIV 1
#define FPE_INTOVF 2
#define FPE_FLTDIV 3
#define FPE_FLTOVF 4
#define FPE_FLTUND 5
#define FPE_FLTRES 6
#define FPE_FLTINV 7
#define FPE_FLTSUB 8
#define SEGV_MAPERR 1
#define SEGV_ACCERR 2
#define BUS_ADRALN 1
#define BUS_ADRERR 2
#define BUS_OBJERR 3
#define TRAP_BRKPT 1
#define TRAP_TRACE 2

struct sigaction {
    union {
        void (*__handler)(int);
        void (*__action)(int, siginfo_t *, void *);
    } __sa;
    sigset_t sa_mask;
    int sa_flags;
    void (*sa_restorer)(void);  /* ignored: the library always uses its own */
};
#define sa_handler __sa.__handler
#define sa_sigaction __sa.__action

typedef struct {
    void *ss_sp;
    int ss_flags;
    size_t ss_size;
} stack_t;
#define SS_ONSTACK 1
#define SS_DISABLE 2
#define MINSIGSTKSZ 2048
#define SIGSTKSZ 8192

sighandler_t signal(int sig, sighandler_t handler);
int sigaction(int sig, const struct sigaction *__krunc_restrict act,
              struct sigaction *__krunc_restrict old);
int raise(int sig);
int kill(pid_t pid, int sig);
int sigemptyset(sigset_t *set);
int sigfillset(sigset_t *set);
int sigaddset(sigset_t *set, int sig);
int sigdelset(sigset_t *set, int sig);
int sigismember(const sigset_t *set, int sig);
int sigprocmask(int how, const sigset_t *__krunc_restrict set, sigset_t *__krunc_restrict old);
int sigpending(sigset_t *set);
int sigsuspend(const sigset_t *mask);
int sigaltstack(const stack_t *__krunc_restrict ss, stack_t *__krunc_restrict old);
void psignal(int sig, const char *s);

__KRUNC_END

#endif
