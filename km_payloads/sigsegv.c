/*
 * sigsegv: writes to an unmapped address (0x10, in the never-mapped first
 * 2 MiB); the payload (and KM with it) dies of SIGSEGV.
 */
#include "km_rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    volatile uintptr_t where = 0x10;
    *(volatile long *)where = 42;
    rt_printf("sigsegv: survived the write\n");
    return 1;
}
