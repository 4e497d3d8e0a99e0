/*
 * Guest-side code, copied by KM into the read-only code page of its private
 * area (KM_PRIV_BASE + KM_PRIV_CODE). Never executed on the host: it lives
 * in .rodata and must be position independent.
 */
#include "layout.h"

#define ENOSYS 38

    .section .rodata
    .balign 16
    .globl km_guest_code, km_guest_code_end, km_guest_syscall_entry, km_guest_syscall_done

km_guest_code:

/*
 * Exception entry stubs, KM_EXC_STUB_SIZE bytes apart so KM can point IDT
 * gate n at km_guest_code + n * KM_EXC_STUB_SIZE. Each leaves a uniform
 * frame (the guest's %rdx, vector, error code, then the CPU's RIP/CS/
 * RFLAGS/RSP/SS) on the IST stack and reports it to KM on KM_FAULT_PORT;
 * KM reads it from there. Every other register still holds the faulting
 * context, so KM can hand that context to a guest signal handler.
 */
.macro exc_noerr vec
    .balign KM_EXC_STUB_SIZE
    pushq $0
    pushq $\vec
    jmp exc_report
.endm

.macro exc_err vec
    .balign KM_EXC_STUB_SIZE
    pushq $\vec
    jmp exc_report
.endm

    exc_noerr 0
    exc_noerr 1
    exc_noerr 2
    exc_noerr 3
    exc_noerr 4
    exc_noerr 5
    exc_noerr 6
    exc_noerr 7
    exc_err   8
    exc_noerr 9
    exc_err   10
    exc_err   11
    exc_err   12
    exc_err   13
    exc_err   14
    exc_noerr 15
    exc_noerr 16
    exc_err   17
    exc_noerr 18
    exc_noerr 19
    exc_noerr 20
    exc_err   21
    exc_noerr 22
    exc_noerr 23
    exc_noerr 24
    exc_noerr 25
    exc_noerr 26
    exc_noerr 27
    exc_noerr 28
    exc_err   29
    exc_err   30
    exc_noerr 31

    .balign KM_EXC_STUB_SIZE
exc_report:
    pushq %rdx                  /* the port number needs %dx */
    movw $KM_FAULT_PORT, %dx
    outl %eax, %dx
1:  hlt                         /* KM resumes a faulted guest only in a signal handler */
    jmp 1b

/*
 * `syscall` lands here (MSR_LSTAR), still at CPL 0 on the caller's stack.
 * It becomes the ordinary hypercall: the Linux registers are spilled into an
 * argument block below the caller's red zone, and the result comes back in
 * %rax with every other register preserved, as the Linux syscall ABI
 * promises (%rcx and %r11 hold the return RIP and RFLAGS).
 *
 * KM knows this layout (signal.c): a signal delivered right after the
 * hypercall finishes the epilogue below on the guest's behalf, so the
 * handler sees the Linux view (RIP after `syscall`, the result in %rax).
 */
    .balign 16
km_guest_syscall_entry:
    leaq -128(%rsp), %rsp       /* skip the red zone; lea leaves flags alone */
    pushq %r9
    pushq %r8
    pushq %r10
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq $-ENOSYS              /* hc_ret */
    movq %rsp, %gs:0
    cmpq $KM_HC_MAX, %rax
    jae 2f                      /* beyond the hypercall ports: -ENOSYS */
    leal KM_HC_PORT_BASE(%rax), %edx
    outl %eax, %dx
km_guest_syscall_done:
2:  popq %rax
    popq %rdi
    popq %rsi
    popq %rdx
    popq %r10
    popq %r8
    popq %r9
    pushq %r11
    popfq
    leaq 128(%rsp), %rsp
    jmpq *%rcx

km_guest_code_end:

    .section .note.GNU-stack,"",@progbits
