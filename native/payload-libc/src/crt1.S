/*
 * crt1.o, the process entry. KM (like Linux) starts the payload with %rsp
 * at argc, then argv[], NULL, envp[], NULL, auxv. __libc_start(main, sp)
 * sets the library up and calls main; it never returns.
 */
    .text
    .globl _start
    .type _start, @function
_start:
    xorl %ebp, %ebp             /* the outermost frame, for debuggers */
    leaq main(%rip), %rdi
    movq %rsp, %rsi
    andq $-16, %rsp             /* the ABI's alignment at a call */
    call __libc_start
    ud2
    .size _start, .-_start

    .section .note.GNU-stack,"",@progbits
