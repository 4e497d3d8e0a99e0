/*
 * <kontain.h>: what is particular to running under KM, the Kontain Monitor.
 *
 * Every system service is a hypercall: the guest stores the address of a
 * km_hc_args_t at %gs:0 and executes `outl` to port 0x8000 + n, n being the
 * Linux x86-64 syscall number; KM writes the result (or -errno) into
 * hc_ret. Unimplemented calls return -ENOTSUP. Run natively, the first
 * hypercall faults (SIGSEGV): these programs only run inside a KM guest.
 */
#ifndef _KRUNC_KONTAIN_H
#define _KRUNC_KONTAIN_H

#include <bits/krunc.h>
#include <stdint.h>

__KRUNC_BEGIN

#define KM_HC_PORT_BASE 0x8000
#define KM_HC_MAX 512           /* hypercall numbers are 0..511 */
#define KM_HC_SNAPSHOT 505      /* KM's snapshot call */

typedef struct km_hc_args {
    uint64_t hc_ret, arg1, arg2, arg3, arg4, arg5, arg6;
} km_hc_args_t;

/* The raw hypercall: returns hc_ret (>= 0, or -errno). nr must be < KM_HC_MAX. */
static inline long km_hcall(unsigned int nr, km_hc_args_t *args)
{
    __asm__ volatile("movq %0, %%gs:0\n\t"
                     "outl %%eax, %%dx"
                     :
                     : "r"(args), "d"((uint16_t)(KM_HC_PORT_BASE + nr)), "a"(0)
                     : "memory");
    return (long)args->hc_ret;
}

/* The same with the arguments spelled out; also raw (-errno), errno untouched. */
long km_hypercall(unsigned int nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                  uint64_t a5, uint64_t a6);

/*
 * Kontain's snapshot call (hypercall 505: label, description, live flag).
 * KM writes the guest to `km --snapshot=FILE` (default ./kmsnap); not live,
 * KM then exits 0. The call returns 0 in a live original and in an instance
 * resumed from FILE (`km FILE`). Returns the raw result: -errno on failure
 * (-ENOTSUP from a KM without snapshots, or with a pipe or socket open).
 */
long km_snapshot(const char *label, const char *description, int live);

/* 1 when running under KM (uname's release ends in .kontain.KVM or .kontain.KKM). */
int km_is_kontain(void);

__KRUNC_END

#endif
