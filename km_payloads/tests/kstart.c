/*
 * kstart: the hypercall sequence a Kontain-libc (musl) payload starts with:
 * arch_prctl(ARCH_SET_FS), set_tid_address, ioctl(TIOCGWINSZ), writev,
 * write. Also checks that %fs really points at the thread block afterwards.
 */
#include "km_rt.h"

static uint64_t tcb[8];     /* tcb[0] points at itself, as in x86-64 TLS */
static int tid_word;

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    struct rt_winsize ws;
    uint64_t fs_self, fs_base = 0;

    tcb[0] = (uint64_t)tcb;
    if (rt_arch_prctl(ARCH_SET_FS, (uint64_t)tcb) != 0)
        return 10;
    if (HC1(__NR_set_tid_address, &tid_word) <= 0)
        return 11;
    long r = rt_ioctl(1, TIOCGWINSZ, &ws);
    if (r != 0 && r != -ENOTTY)
        return 12;
    struct rt_iovec iov[2] = { { "Hello ", 6 }, { "from writev\n", 12 } };
    if (rt_writev(1, iov, 2) != 18)
        return 13;
    __asm__ volatile("movq %%fs:0, %0" : "=r"(fs_self));
    if (rt_arch_prctl(ARCH_GET_FS, (uint64_t)&fs_base) != 0 || fs_base != (uint64_t)tcb)
        return 14;
    if (fs_self != (uint64_t)tcb)
        return 15;
    rt_write(1, "fs ok\n", 6);
    return 0;
}
