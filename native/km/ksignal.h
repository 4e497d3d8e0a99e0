/*
 * Signal internals shared by signal.c (dispositions, masks, delivery,
 * death) and sigframe.c (the Linux frames a handler runs on).
 */
#ifndef KM_KSIGNAL_H
#define KM_KSIGNAL_H

#include <signal.h>

#include "km.h"

#define BIT(sig)        (1ULL << ((sig) - 1))
#define UNBLOCKABLE     (BIT(SIGKILL) | BIT(SIGSTOP))
#define KSIGSET_SIZE    8

/* The kernel's sa_flags and special handlers (<asm/signal.h>). */
#define K_SA_SIGINFO    0x00000004ULL
#define K_SA_RESTORER   0x04000000ULL
#define K_SA_ONSTACK    0x08000000ULL
#define K_SA_RESTART    0x10000000ULL
#define K_SA_NODEFER    0x40000000ULL
#define K_SA_RESETHAND  0x80000000ULL
#define K_SIG_DFL       0
#define K_SIG_IGN       1

/* Values of km->sig.intr: how a hypercall that got EINTR may be restarted. */
enum { INTR_NONE, INTR_EINTR, INTR_RESTARTABLE };

/* signal.c */
uint64_t km_sig_guest_mask(struct km *km);
void km_sig_set_mask(struct km *km, uint64_t mask);
void km_sig_set_host(int sig, uint64_t guest_handler);

/* sigframe.c */
bool km_sigframe_finish_trampoline(struct km *km, struct kvm_regs *r);
void km_sigframe_restart(struct km *km, struct kvm_regs *r, bool via_syscall);
bool km_sigframe_push(struct km *km, int sig, struct km_sigaction *act, const siginfo_t *info,
                      struct kvm_regs *r, const struct km_fault *f);

#endif
