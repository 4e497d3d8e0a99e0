/*
 * dyn: a dynamic payload (ET_EXEC with PT_INTERP naming /ld-krun.so, no
 * shared libraries). KM loads ld-krun.so, which jumps to this program's
 * entry; prints "hello from a dynamic payload".
 *
 * GNU ld only writes PT_INTERP (despite --dynamic-linker) when it links a
 * shared library in, so the program carries its own .interp section.
 */
#include "km_rt.h"

__attribute__((section(".interp"), used))
static const char interp[] = "/ld-krun.so";

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    static const char msg[] = "hello from a dynamic payload\n";
    return rt_write(1, msg, sizeof(msg) - 1) == sizeof(msg) - 1 ? 0 : 1;
}
