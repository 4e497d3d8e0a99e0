/*
 * syscall: talks to KM with the `syscall` instruction instead of hypercalls,
 * the way a static Linux binary does. Prints "syscall write ok" (via
 * syscall), checks the registers the Linux ABI preserves, checks the error
 * numbers for an unimplemented (-ENOTSUP) and an out-of-range (-ENOSYS)
 * call, and exits with status 7 through exit_group.
 */
#include "km_rt.h"

/* The kernel (and KM's trampoline) must leave every register but rax/rcx/r11 alone. */
static int registers_preserved(void)
{
    long rdi = 1, rsi = 2, rdx = 3;
    register long r8 __asm__("r8") = 8, r9 __asm__("r9") = 9, r10 __asm__("r10") = 10;
    register long r12 __asm__("r12") = 12;
    __asm__ volatile("syscall"
                     : "+D"(rdi), "+S"(rsi), "+d"(rdx), "+r"(r8), "+r"(r9), "+r"(r10), "+r"(r12)
                     : "a"((long)__NR_getpid)
                     : "rcx", "r11", "memory");
    return rdi == 1 && rsi == 2 && rdx == 3 && r8 == 8 && r9 == 9 && r10 == 10 && r12 == 12;
}

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    static const char msg[] = "syscall write ok\n";

    if (rt_syscall_insn3(__NR_write, 1, (long)msg, sizeof(msg) - 1) != sizeof(msg) - 1)
        return 1;
    rt_printf("registers=%s\n", registers_preserved() ? "ok" : "clobbered");
    rt_printf("unimplemented=%s\n", rt_errname(rt_syscall_insn3(500, 0, 0, 0)));
    rt_printf("out_of_range=%s\n", rt_errname(rt_syscall_insn3(100000, 0, 0, 0)));
    rt_syscall_insn3(__NR_exit_group, 7, 0, 0);
    return 1;
}
