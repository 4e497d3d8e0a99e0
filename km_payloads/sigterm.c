/*
 * sigterm: installs a SIGTERM handler, prints "ready", then waits in a
 * nanosleep loop. On SIGTERM the handler prints "got SIGTERM" and returns;
 * the interrupted nanosleep fails with EINTR and the payload exits 0.
 * Without KM delivering the signal it would sleep on (or die of it).
 *
 * The sleeps are short because checking a flag and then sleeping is racy
 * (on Linux too): a signal that lands between the two sets the flag while
 * the next sleep has yet to begin; that sleep then ends on its own.
 */
#include "km_rt.h"

static volatile int got_term;

static void on_term(int sig, siginfo_t *info, void *uc)
{
    (void)info, (void)uc;
    if (sig == SIGTERM) {
        rt_printf("got SIGTERM\n");
        got_term = 1;
    }
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    long r = rt_signal(SIGTERM, on_term, 0, 0);
    if (r < 0) {
        rt_dprintf(2, "sigterm: rt_sigaction: %s\n", rt_errname(r));
        return 1;
    }
    rt_printf("ready\n");
    while (!got_term) {
        struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
        r = rt_nanosleep(&ts, 0);
        if (r < 0 && r != -EINTR) {
            rt_dprintf(2, "sigterm: nanosleep: %s\n", rt_errname(r));
            return 1;
        }
    }
    return 0;
}
