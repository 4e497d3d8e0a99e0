/*
 * counter [N [pipe|sys]]: prints "tick 1", "tick 2"... every 100 ms, one
 * write per line, forever or until tick N (0: forever), then exits 0. With
 * "pipe" it keeps a pipe open (a snapshot must then be refused); with "sys"
 * it sleeps with the `syscall` instruction instead of a hypercall. Snapshot tests stop and
 * resume it: the ticks must go on from where they were.
 */
#include "km_rt.h"

int main(int argc, char **argv, char **envp)
{
    long limit = 0;
    int fds[2];
    (void)envp;
    if (argc > 1 && (rt_parse_long(argv[1], &limit) != 0 || limit < 0)) {
        rt_dprintf(2, "counter: bad count: %s\n", argv[1]);
        return 2;
    }
    if (argc > 2 && rt_strcmp(argv[2], "pipe") == 0 && rt_pipe(fds) < 0)
        return 1;
    int sys = argc > 2 && rt_strcmp(argv[2], "sys") == 0;
    for (long n = 1; limit == 0 || n <= limit; n++) {
        rt_printf("tick %ld\n", n);
        struct __kernel_timespec ts = { 0, 100 * 1000 * 1000 };
        long r = sys ? rt_syscall_insn3(__NR_nanosleep, (long)&ts, 0, 0) : rt_sleep_ms(100);
        if (r < 0) {
            rt_dprintf(2, "counter: nanosleep: %s\n", rt_errname(r));
            return 1;
        }
    }
    return 0;
}
