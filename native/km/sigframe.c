/*
 * The Linux x86-64 signal frame, for a guest handler: km_sigframe_push
 * builds it on the guest stack (or the sigaltstack), rt_sigreturn takes
 * the interrupted context back from it. There is no FP state in it (guests
 * have no usable SSE here): uc_mcontext.fpstate is NULL, which Linux
 * allows and libcs accept.
 *
 * Also here: what a vCPU stopped in KM's `syscall` trampoline means for a
 * handler, restarting an interrupted call, and sigaltstack.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "km.h"
#include "ksignal.h"

#define RED_ZONE        128
#define MIN_ALTSTACK    2048                /* Linux's MINSIGSTKSZ */
#ifndef SS_AUTODISARM
#define SS_AUTODISARM   (1U << 31)          /* <linux/signal.h>; glibc lacks it */
#endif

#define RFLAGS_TF       0x100ULL
#define RFLAGS_DF       0x400ULL
#define RFLAGS_RF       0x10000ULL
/* What a sigreturn may change: Linux's FIX_EFLAGS (AC OF DF TF SF ZF AF PF CF RF). */
#define RFLAGS_USER     0x50dd5ULL

#define UC_SIGCONTEXT_SS     0x2
#define UC_STRICT_RESTORE_SS 0x4

/* The x86-64 Linux signal frame: what the kernel pushes, what rt_sigreturn reads. */
struct k_sigcontext {
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
    uint16_t cs, gs, fs, ss;
    uint64_t err, trapno, oldmask, cr2;
    uint64_t fpstate;
    uint64_t reserved1[8];          /* [0]: the guest's %gs:0 hypercall block, see below */
};

struct k_stack {
    uint64_t ss_sp;
    int32_t ss_flags, pad;
    uint64_t ss_size;
};

struct k_ucontext {
    uint64_t uc_flags, uc_link;
    struct k_stack uc_stack;
    struct k_sigcontext uc_mcontext;
    uint64_t uc_sigmask;
};

struct k_rt_sigframe {
    uint64_t pretcode;              /* the handler returns here: sa_restorer */
    struct k_ucontext uc;
    uint8_t info[128];              /* siginfo_t */
};

_Static_assert(sizeof(struct k_ucontext) == 304, "Linux x86-64 ucontext layout");
_Static_assert(sizeof(struct k_rt_sigframe) == 440, "Linux x86-64 rt_sigframe layout");
_Static_assert(sizeof(siginfo_t) == 128, "siginfo_t is 128 bytes");

static uint64_t *gs_slot(struct km *km)
{
    return (uint64_t *)(km->mem + KM_PRIV_BASE + KM_PRIV_GS);
}

/* Reads n bytes of guest code at addr (guest memory or KM's stub page). */
static bool code_is(struct km *km, uint64_t addr, const uint8_t *bytes, size_t n)
{
    const void *p = km_gptr(km, addr, n);
    if (!p)
        p = km_priv_ptr(km, addr, n);
    return p && memcmp(p, bytes, n) == 0;
}

/*
 * A vCPU stopped right after the `syscall` trampoline's hypercall (guest.S):
 * do the trampoline's epilogue here, so that the context a handler sees,
 * and later returns to, is Linux's (RIP after `syscall`, result in %rax,
 * the caller's stack). Returns true if it did.
 */
bool km_sigframe_finish_trampoline(struct km *km, struct kvm_regs *r)
{
    uint64_t b[7];

    if (r->rip != km_priv_code_addr(km_guest_syscall_done))
        return false;
    const void *p = km_gptr(km, r->rsp, sizeof(b));
    if (!p)
        return false;
    memcpy(b, p, sizeof(b));
    r->rax = b[0];
    r->rdi = b[1];
    r->rsi = b[2];
    r->rdx = b[3];
    r->r10 = b[4];
    r->r8 = b[5];
    r->r9 = b[6];
    r->rsp += sizeof(b) + RED_ZONE;
    r->rflags = (r->r11 & RFLAGS_USER) | 0x2;
    r->rip = r->rcx;
    return true;
}

/* Points the vCPU back at the interrupted call, as Linux restarts a syscall. */
void km_sigframe_restart(struct km *km, struct kvm_regs *r, bool via_syscall)
{
    static const uint8_t syscall_insn[] = { 0x0f, 0x05 }, outl_insn[] = { 0xef };

    if (via_syscall && code_is(km, r->rip - 2, syscall_insn, 2)) {
        r->rip -= 2;
        r->rax = km->sig.intr_nr;
    } else if (!via_syscall && code_is(km, r->rip - 1, outl_insn, 1)) {
        r->rip -= 1;            /* %gs:0 and %dx still name the same call */
    }
}

static bool on_altstack(const struct km *km, uint64_t sp)
{
    return km->sig.alt_size && sp > km->sig.alt_sp && sp - km->sig.alt_sp <= km->sig.alt_size;
}

static int altstack_flags(const struct km *km, uint64_t sp)
{
    if (!km->sig.alt_size)
        return SS_DISABLE;
    return (on_altstack(km, sp) ? SS_ONSTACK : 0) | (km->sig.alt_flags & SS_AUTODISARM);
}

/*
 * Builds the frame for a handler and points the vCPU at it: return address
 * sa_restorer, then ucontext and siginfo; %rdi = signo, %rsi = &siginfo,
 * %rdx = &ucontext; %rsp + 8 is 16-byte aligned, as at any function entry.
 * False if Linux would kill the process instead (no SA_RESTORER, or no room
 * on the stack).
 */
bool km_sigframe_push(struct km *km, int sig, struct km_sigaction *act, const siginfo_t *info,
                       struct kvm_regs *r, const struct km_fault *f)
{
    struct k_rt_sigframe fr;
    uint64_t sp = r->rsp;
    bool to_alt = (act->flags & K_SA_ONSTACK) && km->sig.alt_size && !on_altstack(km, sp);

    if (!(act->flags & K_SA_RESTORER))
        return false;           /* x86-64 Linux requires it */
    sp = to_alt ? km->sig.alt_sp + km->sig.alt_size : sp - RED_ZONE;
    if (sp < sizeof(fr) + 16)
        return false;
    sp = ((sp - sizeof(fr)) & ~15ULL) - 8;
    void *dst = km_gptr(km, sp, sizeof(fr));
    if (!dst)
        return false;

    memset(&fr, 0, sizeof(fr));
    fr.pretcode = act->restorer;
    fr.uc.uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
    fr.uc.uc_stack = (struct k_stack){ .ss_sp = km->sig.alt_sp, .ss_size = km->sig.alt_size,
                                       .ss_flags = altstack_flags(km, r->rsp) };
    struct k_sigcontext *sc = &fr.uc.uc_mcontext;
    *sc = (struct k_sigcontext){
        .r8 = r->r8, .r9 = r->r9, .r10 = r->r10, .r11 = r->r11, .r12 = r->r12,
        .r13 = r->r13, .r14 = r->r14, .r15 = r->r15, .rdi = r->rdi, .rsi = r->rsi,
        .rbp = r->rbp, .rbx = r->rbx, .rdx = r->rdx, .rax = r->rax, .rcx = r->rcx,
        .rsp = r->rsp, .rip = r->rip, .eflags = r->rflags,
        .cs = KM_SEL_CODE, .ss = KM_SEL_DATA,
    };
    if (f) {
        sc->err = f->err;
        sc->trapno = f->trapno;
        sc->cr2 = f->cr2;
    }
    uint64_t old_mask = km->sig.in_suspend ? km->sig.suspend_restore : km_sig_guest_mask(km);
    sc->oldmask = fr.uc.uc_sigmask = old_mask;
    /*
     * The hypercall ABI keeps the argument block's address in %gs:0, which
     * the handler's own hypercalls overwrite. The interrupted code may be
     * between its store and its `outl` (or be restarted at the `outl`), so
     * the value travels in the frame and rt_sigreturn puts it back.
     */
    sc->reserved1[0] = *gs_slot(km);
    memcpy(fr.info, info, sizeof(fr.info));
    memcpy(dst, &fr, sizeof(fr));

    r->rip = act->handler;
    r->rsp = sp;
    r->rdi = (uint64_t)sig;
    r->rsi = sp + offsetof(struct k_rt_sigframe, info);
    r->rdx = sp + offsetof(struct k_rt_sigframe, uc);
    r->rax = 0;
    r->rflags &= ~(RFLAGS_TF | RFLAGS_DF | RFLAGS_RF);

    km->sig.in_suspend = false;
    km_sig_set_mask(km, old_mask | act->mask | ((act->flags & K_SA_NODEFER) ? 0 : BIT(sig)));
    if (to_alt && (km->sig.alt_flags & SS_AUTODISARM)) {
        km->sig.alt_sp = km->sig.alt_size = 0;
        km->sig.alt_flags = SS_DISABLE;
    }
    if (km->trace)
        km_trace(km, "signal %d (%s) delivered to handler 0x%llx, frame 0x%llx", sig,
                 sigabbrev_np(sig), (unsigned long long)act->handler, (unsigned long long)sp);
    if (act->flags & K_SA_RESETHAND) {
        act->handler = K_SIG_DFL;
        act->flags &= ~K_SA_SIGINFO;
        km_sig_set_host(sig, K_SIG_DFL);
    }
    return true;
}

int64_t km_hc_sigaltstack(struct km *km, const uint64_t *a)
{
    struct k_stack new, old;
    struct kvm_regs r;
    void *in = NULL, *out = NULL;

    if (a[0] && !(in = km_gptr(km, a[0], sizeof(new))))
        return -EFAULT;
    if (a[1] && !(out = km_gptr(km, a[1], sizeof(old))))
        return -EFAULT;
    km_vcpu_sync(km);
    if (!km_get_regs(km, &r))
        return -EIO;
    km_sigframe_finish_trampoline(km, &r);          /* the caller's %rsp, not the trampoline's */
    old = (struct k_stack){ .ss_sp = km->sig.alt_sp, .ss_size = km->sig.alt_size,
                            .ss_flags = altstack_flags(km, r.rsp) };
    if (in) {
        memcpy(&new, in, sizeof(new));
        int mode = new.ss_flags & ~SS_AUTODISARM;
        if (on_altstack(km, r.rsp))
            return -EPERM;
        if (mode != 0 && mode != SS_DISABLE && mode != SS_ONSTACK)
            return -EINVAL;
        if (mode == SS_DISABLE) {
            km->sig.alt_sp = km->sig.alt_size = 0;
            km->sig.alt_flags = SS_DISABLE;
        } else {
            if (new.ss_size < MIN_ALTSTACK)
                return -ENOMEM;
            km->sig.alt_sp = new.ss_sp;
            km->sig.alt_size = new.ss_size;
            km->sig.alt_flags = new.ss_flags & SS_AUTODISARM;
        }
    }
    if (out)
        memcpy(out, &old, sizeof(old));
    return 0;
}

/* The handler returned through sa_restorer: restore what the frame holds. */
int64_t km_hc_rt_sigreturn(struct km *km, const uint64_t *a)
{
    struct k_ucontext uc;
    struct kvm_regs r;
    (void)a;

    km_vcpu_sync(km);
    if (!km_get_regs(km, &r))
        km_die(km, SIGSEGV, NULL, "rt_sigreturn: cannot read the vCPU's registers");
    km_sigframe_finish_trampoline(km, &r);
    /* sa_restorer runs after the handler's `ret` popped pretcode: %rsp is &uc. */
    const void *p = km_gptr(km, r.rsp, sizeof(uc));
    if (!p) {
        char why[128];
        snprintf(why, sizeof(why), "rt_sigreturn with no signal frame at 0x%llx",
                 (unsigned long long)r.rsp);
        km_die(km, SIGSEGV, &r, why);
    }
    memcpy(&uc, p, sizeof(uc));

    /* As Linux's restore_altstack: re-applied when not on the alternate stack. */
    if (!on_altstack(km, r.rsp)) {
        int mode = uc.uc_stack.ss_flags & ~SS_AUTODISARM;
        if (mode == SS_DISABLE) {
            km->sig.alt_sp = km->sig.alt_size = 0;
            km->sig.alt_flags = SS_DISABLE;
        } else if (mode == 0 && uc.uc_stack.ss_size >= MIN_ALTSTACK) {
            km->sig.alt_sp = uc.uc_stack.ss_sp;
            km->sig.alt_size = uc.uc_stack.ss_size;
            km->sig.alt_flags = uc.uc_stack.ss_flags & SS_AUTODISARM;
        }
    }
    const struct k_sigcontext *sc = &uc.uc_mcontext;
    r.r8 = sc->r8; r.r9 = sc->r9; r.r10 = sc->r10; r.r11 = sc->r11;
    r.r12 = sc->r12; r.r13 = sc->r13; r.r14 = sc->r14; r.r15 = sc->r15;
    r.rdi = sc->rdi; r.rsi = sc->rsi; r.rbp = sc->rbp; r.rbx = sc->rbx;
    r.rdx = sc->rdx; r.rax = sc->rax; r.rcx = sc->rcx; r.rsp = sc->rsp; r.rip = sc->rip;
    r.rflags = (r.rflags & ~RFLAGS_USER) | (sc->eflags & RFLAGS_USER) | 0x2;
    *gs_slot(km) = sc->reserved1[0];
    km_sig_set_mask(km, uc.uc_sigmask);
    if (!km_set_regs(km, &r))
        km_die(km, SIGSEGV, &r, "rt_sigreturn: cannot set the vCPU's registers");
    return KM_HC_NORET;
}
