/*
 * Process entry. KM (like Linux) starts us with %rsp pointing at argc,
 * followed by argv[], NULL, envp[], NULL, auxv. Hand that pointer to C.
 */
    .text
    .globl _start
    .type _start, @function
_start:
    xorl %ebp, %ebp             /* outermost frame for debuggers */
    movq %rsp, %rdi
    andq $-16, %rsp             /* the call below needs an aligned stack */
    call rt_start
    ud2

    .section .note.GNU-stack,"",@progbits
