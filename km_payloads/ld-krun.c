/*
 * ld-krun.so: the smallest program interpreter (PT_INTERP loader) for KM
 * payloads. KM loads it (ET_DYN) next to a dynamic payload and starts here
 * with the payload's initial stack; it finds AT_ENTRY in the auxv and
 * jumps there with that same stack, as a real loader does once it has
 * relocated everything. The main program is ET_EXEC and needs no
 * relocation, and nothing here needs relocating either: position-
 * independent code with no data pointers, no libc, only KM hypercalls.
 */
#include "km_rt.h"

#define AT_NULL  0
#define AT_BASE  7
#define AT_ENTRY 9

__asm__(".text\n"
        ".globl _start\n"
        "_start:\n"
        "    movq %rsp, %rdi\n"         /* argc, argv, envp, auxv */
        "    movq %rsp, %rbx\n"
        "    andq $-16, %rsp\n"
        "    call ldk_entry\n"          /* returns the program's entry */
        "    movq %rbx, %rsp\n"         /* the program gets the stack as KM built it */
        "    xorl %edx, %edx\n"         /* no exit function for the program to register */
        "    jmp *%rax\n");

static __attribute__((noreturn)) void die(const char *msg, size_t len)
{
    rt_write(2, msg, len);
    HC1(__NR_exit_group, 127);
    for (;;)
        __asm__ volatile("ud2");
}

static __attribute__((used)) uint64_t ldk_entry(uint64_t *sp)
{
    uint64_t argc = sp[0];
    uint64_t *p = sp + 1 + argc + 1;        /* past argv and its NULL */
    while (*p)
        p++;                                /* past envp */
    uint64_t entry = 0, base = 0;
    for (p++; p[0] != AT_NULL; p += 2) {
        if (p[0] == AT_ENTRY)
            entry = p[1];
        else if (p[0] == AT_BASE)
            base = p[1];
    }
    static const char no_entry[] = "ld-krun.so: no AT_ENTRY in the auxiliary vector\n";
    static const char not_loaded[] = "ld-krun.so: run directly, not as a PT_INTERP loader\n";
    if (!entry)
        die(no_entry, sizeof(no_entry) - 1);
    if (!base)
        die(not_loaded, sizeof(not_loaded) - 1);
    return entry;
}
