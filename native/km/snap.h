/*
 * The snapshot file's KM-private notes (snapshot.c writes them, resume.c
 * reads them). Layouts are this KM's own structs: a snapshot is only ever
 * resumed by the same KM_VERSION (the IDENT note says which), so they need
 * no versioning beyond that. README.md documents them.
 */
#ifndef KM_SNAP_H
#define KM_SNAP_H

#include <linux/kvm.h>
#include <stdint.h>

#include "km.h"

#define SNAP_NOTE_NAME  "KRUN"
#define SNAP_FORMAT     1

enum {
    NT_KM_IDENT = 0x4b520001,   /* struct snap_ident */
    NT_KM_VCPU,                 /* struct snap_vcpu */
    NT_KM_MEM,                  /* struct snap_mem */
    NT_KM_SIG,                  /* struct snap_sig */
    NT_KM_CWD,                  /* NUL-terminated path */
    NT_KM_FILE,                 /* struct snap_file + NUL-terminated path; one per fd */
    NT_KM_CHECK,                /* uint64_t FNV-1a 64 of the file up to this value; last */
};

struct snap_ident {
    char version[32];           /* KM_VERSION */
    uint64_t cpu_digest;        /* km_cpu_digest() of the host that wrote it */
    uint32_t format, pad;
    char label[64], desc[192];
};

#define SNAP_NMSRS 8

struct snap_vcpu {
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_fpu fpu;
    uint32_t has_xsave, nmsrs;
    struct kvm_msr_entry msrs[SNAP_NMSRS];
    uint8_t gs_slot[KM_GS_SLOT_SIZE];   /* %gs:0: the hypercall block pointer */
    uint32_t xsave[1024];               /* struct kvm_xsave's fixed part */
};

struct snap_mem {
    uint64_t brk_start, brk, chunks_wanted, pad;
    uint64_t page_used[KM_GUEST_PAGES / 64];
};

struct snap_sig {
    struct km_signals sig;
    uint64_t held;              /* caught, not yet delivered: raised again on resume */
};

struct snap_file {
    int32_t fd, fd_flags, fl_flags, pad;    /* F_GETFD, F_GETFL */
    int64_t offset;                         /* -1: not seekable */
    char path[];
};

static inline uint64_t snap_fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}
#define SNAP_FNV_INIT 0xcbf29ce484222325ULL

static inline size_t snap_note_size(size_t namesz, size_t desc)
{
    return 12 + ((namesz + 3) & ~(size_t)3) + ((desc + 3) & ~(size_t)3);
}

#endif
