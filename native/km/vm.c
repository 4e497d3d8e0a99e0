/*
 * The virtual machine: guest page tables and descriptor tables, KVM setup
 * (one VM, a memory slot per used chunk, one vCPU already in 64-bit mode),
 * the run loop, and clear reports when the guest faults.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "km.h"

extern const uint8_t km_guest_code_end[], km_guest_syscall_entry[];

struct kvm_run *volatile km_run_kick;

uint64_t km_priv_code_addr(const void *sym)
{
    return KM_PRIV_BASE + KM_PRIV_CODE + (uint64_t)((const uint8_t *)sym - km_guest_code);
}

#define PTE_PRESENT     0x1ULL
#define PTE_WRITE       0x2ULL
#define PTE_LARGE       0x80ULL
#define LARGE_PAGE      0x200000ULL

#define CR0_PE          (1ULL << 0)
#define CR0_MP          (1ULL << 1)
#define CR0_ET          (1ULL << 4)
#define CR0_NE          (1ULL << 5)
#define CR0_WP          (1ULL << 16)
#define CR0_PG          (1ULL << 31)
#define CR4_PAE         (1ULL << 5)
#define CR4_OSFXSR      (1ULL << 9)
#define CR4_OSXMMEXCPT  (1ULL << 10)
#define EFER_SCE        (1ULL << 0)
#define EFER_LME        (1ULL << 8)
#define EFER_LMA        (1ULL << 10)

#define MSR_STAR        0xc0000081
#define MSR_LSTAR       0xc0000082
#define MSR_SYSCALL_MASK 0xc0000084
#define RFLAGS_SYSCALL_MASK 0x47700     /* TF, DF, IF, IOPL, NT, AC: as Linux */

#define KVM_API_VERSION_NEEDED 12

_Static_assert(KM_PRIV_BASE % LARGE_PAGE == 0 && KM_PRIV_SIZE <= LARGE_PAGE,
               "the private area must sit in one 2 MiB page-table slot");
_Static_assert(KM_GUEST_TOP % LARGE_PAGE == 0, "guest memory ends on a 2 MiB boundary");

static uint64_t *table(struct km *km, uint64_t gpa)
{
    return (uint64_t *)(km->mem + gpa);
}

/*
 * Identity map: 2 MiB pages for guest memory, 4 KiB pages for the private
 * area so its descriptor tables and stubs can be read-only (CR0.WP makes
 * that hold at CPL 0). Page directories are consecutive, one per GiB, so the
 * 2 MiB entry for address x is simply entry x >> 21 across all of them.
 */
static void build_page_tables(struct km *km)
{
    const uint64_t gib = 1ULL << 30;
    const uint64_t ngib = (KM_PRIV_BASE + KM_PRIV_SIZE + gib - 1) / gib;
    const uint64_t pt = KM_PT_PD + ngib * KM_PAGE_SIZE;     /* private-area page table */
    uint64_t *pd = table(km, KM_PT_PD);

    table(km, KM_PT_PML4)[0] = KM_PT_PDPT | PTE_PRESENT | PTE_WRITE;
    for (uint64_t g = 0; g < ngib; g++)
        table(km, KM_PT_PDPT)[g] = (KM_PT_PD + g * KM_PAGE_SIZE) | PTE_PRESENT | PTE_WRITE;
    for (uint64_t addr = KM_GUEST_BASE; addr < KM_GUEST_TOP; addr += LARGE_PAGE)
        pd[addr / LARGE_PAGE] = addr | PTE_PRESENT | PTE_WRITE | PTE_LARGE;
    pd[KM_PRIV_BASE / LARGE_PAGE] = pt | PTE_PRESENT | PTE_WRITE;
    for (uint64_t off = 0; off < KM_PRIV_SIZE; off += KM_PAGE_SIZE) {
        bool writable = off == KM_PRIV_GS || off == KM_PRIV_IST_TOP - KM_PAGE_SIZE;
        table(km, pt)[off / KM_PAGE_SIZE] =
            (KM_PRIV_BASE + off) | PTE_PRESENT | (writable ? PTE_WRITE : 0);
    }
}

static void build_descriptor_tables(struct km *km)
{
    uint8_t *priv = km->mem + KM_PRIV_BASE;
    uint64_t *gdt = (uint64_t *)(priv + KM_PRIV_GDT);
    uint64_t *idt = (uint64_t *)(priv + KM_PRIV_IDT);
    const uint64_t tss = KM_PRIV_BASE + KM_PRIV_TSS, tss_limit = 103;
    const uint64_t ist1 = KM_PRIV_BASE + KM_PRIV_IST_TOP;

    /* Accessed bits preset: the CPU must never need to write the read-only GDT. */
    gdt[KM_SEL_CODE / 8] = 0x00af9b000000ffffULL;   /* 64-bit code, DPL 0 */
    gdt[KM_SEL_DATA / 8] = 0x00cf93000000ffffULL;   /* data, DPL 0 */
    gdt[KM_SEL_TSS / 8] = (tss_limit & 0xffff) | ((tss & 0xffffff) << 16) |
                          (0x8bULL << 40) | (((tss >> 24) & 0xff) << 56);
    gdt[KM_SEL_TSS / 8 + 1] = tss >> 32;

    /* IST1 gives exceptions a known-good stack even if the guest's %rsp is wild. */
    memcpy(priv + KM_PRIV_TSS + 0x24, &ist1, sizeof(ist1));
    uint16_t no_iomap = (uint16_t)(tss_limit + 1);
    memcpy(priv + KM_PRIV_TSS + 0x66, &no_iomap, sizeof(no_iomap));

    for (uint64_t v = 0; v < KM_EXC_VECTORS; v++) {
        uint64_t h = KM_PRIV_BASE + KM_PRIV_CODE + v * KM_EXC_STUB_SIZE;
        idt[2 * v] = (h & 0xffff) | ((uint64_t)KM_SEL_CODE << 16) | (1ULL << 32) |
                     (0x8eULL << 40) | (((h >> 16) & 0xffff) << 48);
        idt[2 * v + 1] = h >> 32;
    }
    memcpy(priv + KM_PRIV_CODE, km_guest_code, (size_t)(km_guest_code_end - km_guest_code));
}

void km_build_guest_tables(struct km *km)
{
    build_page_tables(km);
    build_descriptor_tables(km);
}

static int device_error(struct km *km, const char *path, int err)
{
    if (err == ENOENT || err == ENXIO || err == ENODEV)
        km_err(km, "%s: %s (KVM is required: load kvm_intel/kvm_amd or pass --virt-device)",
               path, km_strerror(err));
    else
        km_err(km, "%s: %s", path, km_strerror(err));
    return KM_EXIT_SETUP;
}

static int open_device(struct km *km, int *fd)
{
    static const char *const defaults[] = { "/dev/kontain", "/dev/kvm", "/dev/kkm" };
    const char *path;

    if (km->opt.device) {
        path = km->opt.device;
        if ((*fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
            return device_error(km, path, errno);
    } else {
        size_t i;
        for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
            if ((*fd = open(defaults[i], O_RDWR | O_CLOEXEC)) >= 0 || errno != ENOENT)
                break;
        }
        if (i == sizeof(defaults) / sizeof(defaults[0]))
            return device_error(km, "/dev/kvm", ENOENT);
        path = defaults[i];
        if (*fd < 0)
            return device_error(km, path, errno);
    }
    km->uname_suffix = strstr(path, "kkm") ? ".kontain.KKM" : ".kontain.KVM";
    km->device_path = path;
    int version = ioctl(*fd, KVM_GET_API_VERSION, 0);
    if (version < 0) {
        km_err(km, "%s: not a KVM device (%s)", path, km_strerror(errno));
        return KM_EXIT_SETUP;
    }
    if (version != KVM_API_VERSION_NEEDED) {
        km_err(km, "%s: KVM API too old (version %d, need %d)", path, version,
               KVM_API_VERSION_NEEDED);
        return KM_EXIT_SETUP;
    }
    return 0;
}

static struct kvm_segment flat_segment(uint16_t selector, bool code)
{
    struct kvm_segment s = {
        .base = 0, .limit = 0xffffffff, .selector = selector, .present = 1,
        .type = code ? 11 : 3, .dpl = 0, .s = 1, .g = 1,
        .l = code, .db = !code,
    };
    return s;
}

static int init_vcpu_state(struct km *km, const struct km_image *img, uint64_t rsp)
{
    struct kvm_sregs s;
    if (ioctl(km->vcpu_fd, KVM_GET_SREGS, &s) < 0)
        return -1;
    s.cs = flat_segment(KM_SEL_CODE, true);
    s.ds = s.es = s.fs = s.ss = flat_segment(KM_SEL_DATA, false);
    s.gs = flat_segment(KM_SEL_DATA, false);
    s.gs.base = KM_PRIV_BASE + KM_PRIV_GS;              /* vCPU 0's slot */
    s.tr = (struct kvm_segment){
        .base = KM_PRIV_BASE + KM_PRIV_TSS, .limit = 103, .selector = KM_SEL_TSS,
        .type = 11, .present = 1,
    };
    s.gdt.base = KM_PRIV_BASE + KM_PRIV_GDT;
    s.gdt.limit = 5 * 8 - 1;
    s.idt.base = KM_PRIV_BASE + KM_PRIV_IDT;
    s.idt.limit = KM_EXC_VECTORS * 16 - 1;
    s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    s.cr3 = KM_PT_PML4;
    /* SSE works where the host lets guests use it; nested hosts may not. */
    s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    s.efer = EFER_SCE | EFER_LME | EFER_LMA;
    if (ioctl(km->vcpu_fd, KVM_SET_SREGS, &s) < 0)
        return -1;

    /* `syscall` lands on the guest trampoline, which makes it a hypercall. */
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[3];
    } msrs = { .hdr.nmsrs = 3 };
    msrs.e[0] = (struct kvm_msr_entry){ .index = MSR_LSTAR,
        .data = km_priv_code_addr(km_guest_syscall_entry) };
    msrs.e[1] = (struct kvm_msr_entry){ .index = MSR_STAR, .data = (uint64_t)KM_SEL_CODE << 32 };
    msrs.e[2] = (struct kvm_msr_entry){ .index = MSR_SYSCALL_MASK, .data = RFLAGS_SYSCALL_MASK };
    if (ioctl(km->vcpu_fd, KVM_SET_MSRS, &msrs) != 3)
        return -1;

    struct kvm_regs r = { .rip = img->start, .rsp = rsp, .rflags = 2 };
    return ioctl(km->vcpu_fd, KVM_SET_REGS, &r);
}

/* Registers every chunk that holds reserved pages and is not a memory slot yet. */
bool km_back_chunks(struct km *km)
{
    uint64_t todo = km->chunks_wanted & ~km->chunks_backed;

    if (km->vm_fd < 0 || todo == 0)
        return true;
    for (unsigned c = 0; c < KM_CHUNKS; c++) {
        if (!(todo >> c & 1))
            continue;
        uint64_t start = (uint64_t)c * KM_CHUNK_SIZE;
        struct kvm_userspace_memory_region region = {
            .slot = c, .guest_phys_addr = start,
            /* the private area rides along with the last chunk */
            .memory_size = KM_CHUNK_SIZE + (c == KM_CHUNKS - 1 ? KM_PRIV_SIZE : 0),
            .userspace_addr = (uint64_t)(uintptr_t)(km->mem + start),
        };
        if (ioctl(km->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
            return false;
        km->chunks_backed |= 1ULL << c;
    }
    return true;
}

static int create_vm(struct km *km, int kvm_fd, const struct km_image *img, uint64_t rsp)
{
    const char *step = "KVM_CREATE_VM";
    int mmap_size;

    if ((km->vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0)) < 0)
        goto fail;
    /* The private area's slot is the last chunk's: it must always exist. */
    km->chunks_wanted |= 1ULL << (KM_CHUNKS - 1);
    step = "KVM_SET_USER_MEMORY_REGION";
    if (!km_back_chunks(km))
        goto fail;
    step = "KVM_CREATE_VCPU";
    if ((km->vcpu_fd = ioctl(km->vm_fd, KVM_CREATE_VCPU, 0)) < 0)
        goto fail;
    step = "KVM_GET_VCPU_MMAP_SIZE";
    if ((mmap_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0)) <= 0)
        goto fail;
    km->run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, km->vcpu_fd, 0);
    step = "mmap(kvm_run)";
    if (km->run == MAP_FAILED)
        goto fail;
    step = "vCPU register setup";
    if (init_vcpu_state(km, img, rsp) < 0)
        goto fail;
    km_run_kick = km->run;      /* from now on KM's signal handlers can stop KVM_RUN */
    return 0;
fail:
    km_err(km, "KVM setup failed at %s: %s", step, km_strerror(errno));
    return KM_EXIT_SETUP;
}

int km_vm_create(struct km *km, const struct km_image *img, uint64_t rsp)
{
    int kvm_fd, rc;
    if ((rc = open_device(km, &kvm_fd)) != 0)
        return rc;
    rc = create_vm(km, kvm_fd, img, rsp);
    close(kvm_fd);
    return rc;
}

/*
 * The digest of the CPU features the guest may see, for snapshots: computed
 * when first needed (a snapshot or a resume), as each ioctl costs at start.
 */
uint64_t km_cpu_digest_cached(struct km *km)
{
    if (!km->have_digest && km->device_path) {
        int fd = open(km->device_path, O_RDWR | O_CLOEXEC);
        if (fd >= 0) {
            km->cpu_digest = km_cpu_digest(fd);
            km->have_digest = true;
            close(fd);
        }
    }
    return km->cpu_digest;
}

/* ---- the vCPU's registers --------------------------------------------- */

/*
 * KVM finishes an I/O exit (advancing RIP past the `outl`) only when
 * KVM_RUN is entered again, so before KM reads or changes registers after
 * one it re-enters with immediate_exit set: KVM completes the instruction
 * and returns at once, without running guest code.
 */
void km_vcpu_sync(struct km *km)
{
    if (!km->io_pending)
        return;
    km->io_pending = false;
    km->run->immediate_exit = 1;
    ioctl(km->vcpu_fd, KVM_RUN, 0);
    km->run->immediate_exit = 0;    /* the run loop checks for held signals before KVM_RUN */
}

bool km_get_regs(struct km *km, struct kvm_regs *r)
{
    return ioctl(km->vcpu_fd, KVM_GET_REGS, r) == 0;
}

bool km_set_regs(struct km *km, const struct kvm_regs *r)
{
    return ioctl(km->vcpu_fd, KVM_SET_REGS, r) == 0;
}

uint64_t km_guest_fs_base(struct km *km)
{
    struct kvm_sregs s;
    return ioctl(km->vcpu_fd, KVM_GET_SREGS, &s) == 0 ? s.fs.base : 0;
}

uint64_t km_guest_rip(struct km *km)
{
    struct kvm_regs r;
    return km_get_regs(km, &r) ? r.rip : 0;
}

/* ---- guest faults ------------------------------------------------------ */

/* si_code values (<asm-generic/siginfo.h>) */
#define K_SI_KERNEL     0x80
#define K_ILL_ILLOPN    2
#define K_FPE_INTDIV    1
#define K_FPE_FLTINV    7
#define K_SEGV_MAPERR   1
#define K_SEGV_ACCERR   2
#define K_BUS_ADRALN    1
#define K_TRAP_TRACE    2

static const struct {
    const char *name;
    int signo;                  /* what Linux would deliver to a process */
    int code;                   /* its si_code */
    bool resumable;             /* a handler may run (and return) */
} exceptions[KM_EXC_VECTORS] = {
    [0] = { "divide error (#DE)", SIGFPE, K_FPE_INTDIV, true },
    [1] = { "debug exception (#DB)", SIGTRAP, K_TRAP_TRACE, true },
    [2] = { "non-maskable interrupt", SIGSEGV, K_SI_KERNEL, false },
    [3] = { "breakpoint (#BP)", SIGTRAP, K_SI_KERNEL, true },
    [4] = { "overflow (#OF)", SIGSEGV, K_SI_KERNEL, true },
    [5] = { "bound range exceeded (#BR)", SIGSEGV, K_SI_KERNEL, true },
    [6] = { "invalid opcode (#UD)", SIGILL, K_ILL_ILLOPN, true },
    [7] = { "device not available (#NM)", SIGILL, K_ILL_ILLOPN, true },
    [8] = { "double fault (#DF)", SIGSEGV, K_SI_KERNEL, false },
    [10] = { "invalid TSS (#TS)", SIGSEGV, K_SI_KERNEL, false },
    [11] = { "segment not present (#NP)", SIGBUS, K_SI_KERNEL, true },
    [12] = { "stack-segment fault (#SS)", SIGBUS, K_SI_KERNEL, true },
    [13] = { "general protection fault (#GP)", SIGSEGV, K_SI_KERNEL, true },
    [14] = { "page fault (#PF)", SIGSEGV, K_SEGV_MAPERR, true },
    [16] = { "x87 floating-point error (#MF)", SIGFPE, K_FPE_FLTINV, true },
    [17] = { "alignment check (#AC)", SIGBUS, K_BUS_ADRALN, true },
    [18] = { "machine check (#MC)", SIGBUS, K_SI_KERNEL, false },
    [19] = { "SIMD floating-point exception (#XM)", SIGFPE, K_FPE_FLTINV, true },
    [21] = { "control-protection exception (#CP)", SIGSEGV, K_SI_KERNEL, true },
};

/* A fault KM cannot hand to the guest: the payload dies of signo. */
__attribute__((noreturn))
static void fatal(struct km *km, int signo, const char *what, struct kvm_regs *regs)
{
    struct kvm_regs r;
    char report[sizeof(((struct km_fault *)0)->what) + 64];

    if (!regs && km_get_regs(km, &r))
        regs = &r;
    snprintf(report, sizeof(report), "guest fault: %s at RIP 0x%llx", what,
             (unsigned long long)(regs ? regs->rip : 0));
    km_die(km, signo, regs, report);
}

/* KM-level failures that are not a Linux signal: exit 134 as before. */
static int abort_guest(struct km *km, const char *what)
{
    km_err(km, "guest fault: %s at RIP 0x%llx", what, (unsigned long long)km_guest_rip(km));
    return KM_EXIT_ABORT;
}

/*
 * The exception stubs left (rdx, vector, error code, RIP, CS, RFLAGS, RSP,
 * SS) at %rsp; every other register is the faulting context's.
 */
static void guest_exception(struct km *km)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct km_fault f;
    uint64_t frame[8];

    km_vcpu_sync(km);
    const void *p = !km_get_regs(km, &regs) ? NULL : km_priv_ptr(km, regs.rsp, sizeof(frame));
    if (!p)
        fatal(km, SIGSEGV, "I/O to KM's private fault port", NULL);
    memcpy(frame, p, sizeof(frame));
    uint64_t vector = frame[1], error = frame[2];
    regs.rdx = frame[0];
    regs.rip = frame[3];
    regs.rflags = frame[5];
    regs.rsp = frame[6];

    memset(&f, 0, sizeof(f));
    bool known = vector < KM_EXC_VECTORS && exceptions[vector].name;
    const char *name = known ? exceptions[vector].name : "reserved exception";
    f.signo = known ? exceptions[vector].signo : SIGSEGV;
    f.code = known ? exceptions[vector].code : K_SI_KERNEL;
    f.resumable = known && exceptions[vector].resumable;
    f.trapno = vector;
    f.err = error;
    f.addr = f.signo == SIGSEGV || f.signo == SIGBUS ? 0 : regs.rip;

    char what[192];
    if (vector == 14 && ioctl(km->vcpu_fd, KVM_GET_SREGS, &sregs) == 0) {
        f.cr2 = f.addr = sregs.cr2;
        f.code = error & 0x1 ? K_SEGV_ACCERR : K_SEGV_MAPERR;
        snprintf(what, sizeof(what), "%s %s address 0x%llx (%s)", name,
                 /* the fetch bit is only reported with NX on; a fault at RIP is a fetch */
                 error & 0x10 || sregs.cr2 == regs.rip ? "executing" : error & 0x2 ? "writing" : "reading",
                 (unsigned long long)sregs.cr2, error & 0x1 ? "protection violation" : "not mapped");
    } else if (error) {
        snprintf(what, sizeof(what), "%s, error code 0x%llx", name, (unsigned long long)error);
    } else {
        snprintf(what, sizeof(what), "%s", name);
    }
    snprintf(f.what, sizeof(f.what), "guest fault: %s at RIP 0x%llx", what,
             (unsigned long long)regs.rip);
    km_signal_fault(km, &regs, &f);
}

/*
 * Nested hosts (PVM) fail to emulate int3 instead of raising #BP: it is
 * the breakpoint trap all the same, so it becomes SIGTRAP with RIP past it.
 */
static void int3_trap(struct km *km, struct kvm_regs *regs)
{
    struct km_fault f = {
        .signo = SIGTRAP, .code = K_SI_KERNEL, .trapno = 3, .resumable = true,
    };
    regs->rip += 1;
    f.addr = regs->rip;
    snprintf(f.what, sizeof(f.what), "guest fault: breakpoint (#BP) at RIP 0x%llx",
             (unsigned long long)regs->rip);
    km_signal_fault(km, regs, &f);
}

/* Returns only if the guest can go on (a breakpoint a handler took). */
static void internal_error(struct km *km)
{
    struct kvm_regs regs;
    uint64_t rip = km_get_regs(km, &regs) ? regs.rip : 0;
    char what[192];
    const uint8_t *code = km_gptr(km, rip, 4);

    if (km->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && code && code[0] == 0xcc)
        return int3_trap(km, &regs);
    if (km->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && !code)
        fatal(km, SIGSEGV, "executing outside guest memory", NULL);
    if (km->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
        snprintf(what, sizeof(what),
                 "instruction %02x %02x %02x %02x cannot be executed (KVM emulation failure; "
                 "x87/SSE are unavailable in guests on this host: build with -mgeneral-regs-only)",
                 code[0], code[1], code[2], code[3]);
        fatal(km, SIGILL, what, NULL);
    }
    snprintf(what, sizeof(what), "KVM internal error %u", km->run->internal.suberror);
    fatal(km, SIGABRT, what, NULL);
}

/* Handles one exit; false when the guest is done (km->exit_code says how). */
static bool handle_exit(struct km *km)
{
    struct kvm_run *run = km->run;
    char what[128];

    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        km->io_pending = true;
        if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port >= KM_HC_PORT_BASE &&
            run->io.port < KM_HC_PORT_BASE + KM_HC_MAX)
            return km_hcall(km, run->io.port - KM_HC_PORT_BASE);
        if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == KM_FAULT_PORT) {
            guest_exception(km);
            return true;
        }
        snprintf(what, sizeof(what), "I/O to port 0x%x (not a hypercall)", run->io.port);
        fatal(km, SIGSEGV, what, NULL);
    case KVM_EXIT_MMIO:
        snprintf(what, sizeof(what), "%s address 0x%llx (outside allocated guest memory)",
                 run->mmio.is_write ? "writing" : "reading", (unsigned long long)run->mmio.phys_addr);
        fatal(km, SIGSEGV, what, NULL);
    case KVM_EXIT_HLT:
        km->exit_code = abort_guest(km, "hlt instruction");
        return false;
    case KVM_EXIT_SHUTDOWN:
        km->exit_code = abort_guest(km, "triple fault (VM shutdown)");
        return false;
    case KVM_EXIT_FAIL_ENTRY:
        snprintf(what, sizeof(what), "VM entry failed (hardware reason 0x%llx)",
                 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        km->exit_code = abort_guest(km, what);
        return false;
    case KVM_EXIT_INTERNAL_ERROR:
        internal_error(km);
        return true;
    default:
        snprintf(what, sizeof(what), "unexpected KVM exit reason %u", run->exit_reason);
        km->exit_code = abort_guest(km, what);
        return false;
    }
}

int km_vm_run(struct km *km)
{
    struct kvm_run *run = km->run;

    for (;;) {
        /*
         * Cleared before the check: a signal caught after the check sets it
         * again, and KVM_RUN then returns at once.
         */
        run->immediate_exit = 0;
        km_signals_look();
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        if (km_signals_wanted(km))
            km_signals_deliver(km);
        km_signals_settle(km);
        if (km_mgt_pending)
            km_mgt_serve(km, false);    /* the vCPU is between instructions or hypercalls */
        int r = ioctl(km->vcpu_fd, KVM_RUN, 0);
        km->io_pending = false;
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            km_err(km, "KVM_RUN failed: %s", km_strerror(errno));
            return KM_EXIT_ABORT;
        }
        if (!handle_exit(km))
            break;
    }
    if (km->trace)
        km_trace(km, "km exiting with status %d", km->exit_code);
    return km->exit_code;
}
