/*
 * The sa_restorer every handler returns to: rt_sigreturn as a hypercall.
 * %rsp must stay where the handler's `ret` left it (KM finds the signal
 * frame there), so the argument block is a static one rather than on the
 * stack; KM reads no arguments and writes no hc_ret for this call, so one
 * block serves nested handlers too.
 */
    .text
    .globl __krunc_sigreturn
    .hidden __krunc_sigreturn
    .type __krunc_sigreturn, @function
__krunc_sigreturn:
    leaq sigreturn_block(%rip), %rax
    movq %rax, %gs:0
    movw $0x800f, %dx           /* 0x8000 + 15 (rt_sigreturn) */
    outl %eax, %dx
    ud2                         /* rt_sigreturn does not come back here */
    .size __krunc_sigreturn, .-__krunc_sigreturn

    .bss
    .balign 8
sigreturn_block:
    .zero 56

    .section .note.GNU-stack,"",@progbits
