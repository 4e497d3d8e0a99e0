/*
 * bigmem [MiB]: fills MiB (default 4) of memory (each 8-byte word holds its address), prints
 * "filled", sleeps ~2 s in 100 ms steps, checks every word, unmaps and maps
 * the first half again (it must read as zero), prints "ok" and exits 0.
 * With enough MiB, a resumed snapshot of it is mapped from the file (see
 * native/km/resume.c); guest page faults are slow on nested hosts, though.
 */
#include "km_rt.h"


int main(int argc, char **argv, char **envp)
{
    long mib = 4;
    (void)envp;
    if (argc > 1 && (rt_parse_long(argv[1], &mib) != 0 || mib < 1))
        return 2;
    const uint64_t SIZE = (uint64_t)mib << 20;
    long r = rt_mmap(0, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r < 0) {
        rt_dprintf(2, "bigmem: mmap: %s\n", rt_errname(r));
        return 1;
    }
    volatile uint64_t *w = (uint64_t *)r;
    for (uint64_t i = 0; i < SIZE / 8; i++)
        w[i] = (uint64_t)&w[i];
    rt_printf("filled\n");
    for (int i = 0; i < 20; i++)
        rt_sleep_ms(100);
    for (uint64_t i = 0; i < SIZE / 8; i++)
        if (w[i] != (uint64_t)&w[i]) {
            rt_printf("bad word at %p\n", (void *)&w[i]);
            return 1;
        }
    rt_munmap((void *)w, SIZE / 2);
    r = rt_mmap((void *)w, SIZE / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (r != (long)w)
        return 1;
    for (uint64_t i = 0; i < SIZE / 16; i++)
        if (w[i]) {
            rt_printf("not zero at %p\n", (void *)&w[i]);
            return 1;
        }
    rt_printf("ok\n");
    return 0;
}
