/*
 * snapself [live|pipe|bad|sys] [FILE]: snapshots itself with hypercall 505
 * (label "self"). Before, it opens FILE (default ./snapself.data) and
 * writes "before\n"; after, it writes "after\n" through the same fd and
 * prints "after snapshot rc=N" (0 in the resumed instance and in a live
 * original), then "bye". "pipe" holds a pipe open, so the call must fail
 * (-ENOTSUP) and the payload goes on; "bad" passes a bad label pointer;
 * "sys" makes the call with the `syscall` instruction (not live).
 */
#include "km_rt.h"

int main(int argc, char **argv, char **envp)
{
    const char *mode = argc > 1 ? argv[1] : "";
    const char *path = argc > 2 ? argv[2] : "snapself.data";
    int fds[2];
    (void)envp;
    long fd = rt_open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) {
        rt_dprintf(2, "snapself: %s: %s\n", path, rt_errname(fd));
        return 1;
    }
    rt_write((int)fd, "before\n", 7);
    if (rt_strcmp(mode, "pipe") == 0 && rt_pipe(fds) < 0)
        return 1;
    rt_printf("snapshotting\n");
    const char *label = rt_strcmp(mode, "bad") == 0 ? (const char *)8 : "self";
    long rc = rt_strcmp(mode, "sys") == 0
                  ? rt_syscall_insn3(KM_HC_SNAPSHOT, (long)label, (long)"snapself test", 0)
                  : rt_snapshot(label, "snapself test", rt_strcmp(mode, "live") == 0);
    rt_write((int)fd, "after\n", 6);
    rt_close((int)fd);
    if (rc < 0)
        rt_printf("after snapshot rc=%ld (%s)\n", rc, rt_errname(rc));
    else
        rt_printf("after snapshot rc=%ld\n", rc);
    rt_printf("bye\n");
    return 0;
}
