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

/*
 * Signal handlers return here (sa_restorer): rt_sigreturn as a hypercall.
 * %rsp must stay where the handler's `ret` left it (KM finds the frame
 * there), so the argument block is a static one, not on the stack; KM
 * never writes its hc_ret for this call.
 */
    .globl rt_restore
    .type rt_restore, @function
rt_restore:
    leaq rt_restore_block(%rip), %rax
    movq %rax, %gs:0
    movw $0x800f, %dx           /* 0x8000 + __NR_rt_sigreturn */
    outl %eax, %dx
    ud2                         /* rt_sigreturn does not return */

    .bss
    .balign 8
rt_restore_block:
    .zero 56

    .section .note.GNU-stack,"",@progbits
