/*
 * sleeper [N]: prints "ready", then sleeps N seconds (default 3600) in one
 * nanosleep and exits 0. Tests signal it while it sleeps.
 */
#include "km_rt.h"

int main(int argc, char **argv, char **envp)
{
    long seconds = 3600;
    (void)envp;
    if (argc > 1 && (rt_parse_long(argv[1], &seconds) != 0 || seconds < 0)) {
        rt_dprintf(2, "sleeper: bad duration: %s\n", argv[1]);
        return 2;
    }
    rt_printf("ready\n");
    struct __kernel_timespec ts = { .tv_sec = seconds, .tv_nsec = 0 };
    long r = rt_nanosleep(&ts, 0);
    if (r < 0) {
        rt_dprintf(2, "sleeper: nanosleep: %s\n", rt_errname(r));
        return 1;
    }
    return 0;
}
