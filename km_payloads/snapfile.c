/*
 * snapfile PATH: writes "first half\n" to PATH, prints "wrote first half",
 * sleeps ~3 s in 100 ms steps, then writes "second half\n" through the same
 * fd, without lseek (the offset must survive a snapshot and resume), closes
 * it and prints "done".
 */
#include "km_rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    if (argc != 2) {
        rt_dprintf(2, "usage: snapfile PATH\n");
        return 2;
    }
    long fd = rt_open(argv[1], O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) {
        rt_dprintf(2, "snapfile: %s: %s\n", argv[1], rt_errname(fd));
        return 1;
    }
    if (rt_write((int)fd, "first half\n", 11) != 11)
        return 1;
    rt_printf("wrote first half\n");
    for (int i = 0; i < 30; i++)
        rt_sleep_ms(100);
    long r = rt_write((int)fd, "second half\n", 12);
    if (r != 12) {
        rt_dprintf(2, "snapfile: write: %s\n", rt_errname(r));
        return 1;
    }
    rt_close((int)fd);
    rt_printf("done\n");
    return 0;
}
