/*
 * Signals handled in the guest. Without arguments: handlers installed with
 * signal() and sigaction() run on raise()/kill(), see siginfo, respect the
 * mask, SIG_IGN, SA_RESETHAND, an alarm interrupting pause(), and
 * longjmp out of a handler. With "wait-term": a SIGTERM handler, then
 * "ready" and a wait for the test's `kill -TERM`; the handler's flag ends
 * the wait and main prints "got SIGTERM" and exits 0.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static volatile sig_atomic_t usr1_hits, last_sig, alarm_hits, term_seen;
static volatile int info_signo, info_code, info_pid;
static jmp_buf escape;

static void on_usr1(int sig)
{
    usr1_hits++;
    last_sig = sig;
}

static void on_info(int sig, siginfo_t *info, void *uc)
{
    (void)uc;
    last_sig = sig;
    info_signo = info->si_signo;
    info_code = info->si_code;
    info_pid = info->si_pid;
}

static void on_alarm(int sig)
{
    (void)sig;
    alarm_hits++;
}

static void on_term(int sig)
{
    (void)sig;
    term_seen = 1;
}

static void jump_out(int sig)
{
    longjmp(escape, sig);
}

static int wait_for_term(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;    /* no SA_RESTART: the sleep ends with EINTR */
    CHECK(sigaction(SIGTERM, &sa, NULL) == 0);
    printf("ready\n");
    fflush(stdout);
    /* Short sleeps: a signal between the check and the sleep only delays us. */
    for (int i = 0; i < 200 && !term_seen; i++)
        usleep(50000);
    printf(term_seen ? "got SIGTERM\n" : "no SIGTERM\n");
    return term_seen ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "wait-term") == 0)
        return wait_for_term();

    CHECK(signal(SIGUSR1, on_usr1) == SIG_DFL);
    CHECK(raise(SIGUSR1) == 0 && usr1_hits == 1 && last_sig == SIGUSR1);
    printf("SIGUSR1 handler ran %d time(s)\n", (int)usr1_hits);
    CHECK(kill(getpid(), SIGUSR1) == 0 && usr1_hits == 2);
    CHECK(signal(SIGUSR1, SIG_IGN) == on_usr1);
    CHECK(raise(SIGUSR1) == 0 && usr1_hits == 2);

    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_info;
    sa.sa_flags = SA_SIGINFO;
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
    CHECK(raise(SIGUSR2) == 0 && info_signo == SIGUSR2 && info_code == SI_USER &&
          info_pid == getpid());
    CHECK(sigaction(SIGUSR2, NULL, &old) == 0 && old.sa_sigaction == on_info &&
          (old.sa_flags & SA_SIGINFO));

    /* Blocked: pending until unblocked, then delivered at once. */
    sigset_t set, pending, was;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    CHECK(sigismember(&set, SIGUSR1) == 1 && sigismember(&set, SIGUSR2) == 0);
    CHECK(sigaddset(&set, 0) == -1 && errno == EINVAL);
    signal(SIGUSR1, on_usr1);
    CHECK(sigprocmask(SIG_BLOCK, &set, &was) == 0 && !sigismember(&was, SIGUSR1));
    raise(SIGUSR1);
    CHECK(usr1_hits == 2);
    CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGUSR1));
    CHECK(sigprocmask(SIG_SETMASK, &was, NULL) == 0 && usr1_hits == 3);

    /* SA_RESETHAND: one delivery, then the default again. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sa.sa_flags = (int)SA_RESETHAND;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0 && raise(SIGUSR1) == 0 && usr1_hits == 4);
    CHECK(sigaction(SIGUSR1, NULL, &old) == 0 && old.sa_handler == SIG_DFL);

    /* A timer signal ends pause(). */
    signal(SIGALRM, on_alarm);
    struct itimerval it = { { 0, 0 }, { 0, 30000 } };
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    CHECK(pause() == -1 && errno == EINTR && alarm_hits == 1);
    CHECK(alarm(0) == 0);

    /* longjmp out of a handler; the signal stays blocked until unblocked by hand. */
    signal(SIGUSR2, jump_out);
    int got = setjmp(escape);
    if (got == 0) {
        raise(SIGUSR2);
        CHECK(!"longjmp did not leave the handler");
    }
    CHECK(got == SIGUSR2);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_UNBLOCK, &set, NULL);

    CHECK(signal(SIGKILL, on_usr1) == SIG_ERR && errno == EINVAL);
    CHECK(strcmp(strsignal(SIGTERM), "Terminated") == 0);
    CHECK(strcmp(strsignal(SIGSEGV), "Segmentation fault") == 0);
    return checks_done();
}
