/*
 * fault MODE: does one thing a guest must not survive, so tests can check
 * that KM reports it clearly and exits instead of hanging. Modes:
 *   ud2 null unmapped unbacked unbacked-write unbacked-jump jump gp div0
 *   write-ro wild-rsp port hlt badblock sse spin
 * "sse" may legitimately succeed (prints "sse ok") where the host allows SSE.
 * "spin" prints "spinning" and loops without hypercalls until KM is signalled.
 */
#include "km_rt.h"

#define UNMAPPED 0x50000000UL               /* above guest memory and KM's area */
#define UNBACKED 0x10000000UL               /* guest range no allocation reached */
#define KM_PRIVATE_GDT 0x40000000UL         /* read-only to the guest */

/* Through a volatile so the compiler cannot prove (and warn) the address is bad. */
static int load(uintptr_t addr)
{
    volatile uintptr_t a = addr;
    return *(volatile int *)a;
}

static int run(const char *m)
{
    if (!rt_strcmp(m, "ud2"))
        __asm__ volatile("ud2");
    else if (!rt_strcmp(m, "null"))
        return load(8);
    else if (!rt_strcmp(m, "unmapped"))
        return load(UNMAPPED);
    else if (!rt_strcmp(m, "unbacked"))
        return load(UNBACKED);
    else if (!rt_strcmp(m, "unbacked-write"))
        *(volatile char *)UNBACKED = 1;
    else if (!rt_strcmp(m, "unbacked-jump"))
        ((void (*)(void))UNBACKED)();
    else if (!rt_strcmp(m, "jump"))
        ((void (*)(void))UNMAPPED)();
    else if (!rt_strcmp(m, "gp"))
        return load(0x8000000000000000UL);     /* non-canonical */
    else if (!rt_strcmp(m, "div0"))
        __asm__ volatile("xorl %%ecx, %%ecx\n\tdivl %%ecx" ::: "eax", "ecx", "edx");
    else if (!rt_strcmp(m, "write-ro"))
        *(volatile char *)KM_PRIVATE_GDT = 1;
    else if (!rt_strcmp(m, "wild-rsp"))
        __asm__ volatile("movq $16, %%rsp\n\tpushq $0" ::: "memory");
    else if (!rt_strcmp(m, "port"))
        __asm__ volatile("outb %%al, %%dx" :: "a"(0), "d"(0x1234));
    else if (!rt_strcmp(m, "hlt"))
        __asm__ volatile("hlt");
    else if (!rt_strcmp(m, "badblock"))
        __asm__ volatile("movq $16, %%gs:0\n\toutl %%eax, %%dx" :: "a"(0), "d"(0x8001) : "memory");
    else if (!rt_strcmp(m, "sse")) {
        __asm__ volatile(".byte 0x0f, 0x57, 0xc0");    /* xorps %xmm0, %xmm0 */
        rt_printf("sse ok\n");
        return 0;
    } else if (!rt_strcmp(m, "spin")) {
        rt_printf("spinning\n");
        for (;;)
            __asm__ volatile("pause");
    } else {
        rt_dprintf(2, "fault: unknown mode %s\n", m);
        return 2;
    }
    rt_printf("fault: %s did not fault\n", m);
    return 1;
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    return argc == 2 ? run(argv[1]) : 2;
}
