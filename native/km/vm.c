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

extern const uint8_t km_guest_code[], km_guest_code_end[], km_guest_syscall_entry[];

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
        .data = KM_PRIV_BASE + KM_PRIV_CODE + (uint64_t)(km_guest_syscall_entry - km_guest_code) };
    msrs.e[1] = (struct kvm_msr_entry){ .index = MSR_STAR, .data = (uint64_t)KM_SEL_CODE << 32 };
    msrs.e[2] = (struct kvm_msr_entry){ .index = MSR_SYSCALL_MASK, .data = RFLAGS_SYSCALL_MASK };
    if (ioctl(km->vcpu_fd, KVM_SET_MSRS, &msrs) != 3)
        return -1;

    struct kvm_regs r = { .rip = img->entry, .rsp = rsp, .rflags = 2 };
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

/* ---- fault reports ---------------------------------------------------- */

static const struct {
    const char *name;
    int signo;                  /* what Linux would deliver to a process */
} exceptions[KM_EXC_VECTORS] = {
    [0] = { "divide error (#DE)", SIGFPE },
    [1] = { "debug exception (#DB)", SIGTRAP },
    [2] = { "non-maskable interrupt", SIGSEGV },
    [3] = { "breakpoint (#BP)", SIGTRAP },
    [4] = { "overflow (#OF)", SIGSEGV },
    [5] = { "bound range exceeded (#BR)", SIGSEGV },
    [6] = { "invalid opcode (#UD)", SIGILL },
    [7] = { "device not available (#NM)", SIGILL },
    [8] = { "double fault (#DF)", SIGSEGV },
    [10] = { "invalid TSS (#TS)", SIGSEGV },
    [11] = { "segment not present (#NP)", SIGBUS },
    [12] = { "stack-segment fault (#SS)", SIGBUS },
    [13] = { "general protection fault (#GP)", SIGSEGV },
    [14] = { "page fault (#PF)", SIGSEGV },
    [16] = { "x87 floating-point error (#MF)", SIGFPE },
    [17] = { "alignment check (#AC)", SIGBUS },
    [18] = { "machine check (#MC)", SIGBUS },
    [19] = { "SIMD floating-point exception (#XM)", SIGFPE },
    [21] = { "control-protection exception (#CP)", SIGSEGV },
};

uint64_t km_guest_rip(struct km *km)
{
    struct kvm_regs r;
    return ioctl(km->vcpu_fd, KVM_GET_REGS, &r) < 0 ? 0 : r.rip;
}

static int fault(struct km *km, int signo, const char *what, uint64_t rip)
{
    km_err(km, "guest fault: %s at RIP 0x%llx", what, (unsigned long long)rip);
    return 128 + signo;
}

/* The exception stubs left (vector, error code, RIP, CS, RFLAGS, RSP, SS) at %rsp. */
static int report_exception(struct km *km)
{
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    uint64_t frame[7];
    char what[192];

    const void *p = ioctl(km->vcpu_fd, KVM_GET_REGS, &regs) < 0 ? NULL
                  : km_priv_ptr(km, regs.rsp, sizeof(frame));
    if (!p)
        return fault(km, SIGSEGV, "I/O to KM's private fault port", km_guest_rip(km));
    memcpy(frame, p, sizeof(frame));
    uint64_t vector = frame[0], error = frame[1], rip = frame[2];
    const char *name = vector < KM_EXC_VECTORS && exceptions[vector].name
                     ? exceptions[vector].name : "reserved exception";
    int signo = vector < KM_EXC_VECTORS && exceptions[vector].signo ? exceptions[vector].signo : SIGSEGV;

    if (vector == 14 && ioctl(km->vcpu_fd, KVM_GET_SREGS, &sregs) == 0)
        snprintf(what, sizeof(what), "%s %s address 0x%llx (%s)", name,
                 /* the fetch bit is only reported with NX on; a fault at RIP is a fetch */
                 error & 0x10 || sregs.cr2 == rip ? "executing" : error & 0x2 ? "writing" : "reading",
                 (unsigned long long)sregs.cr2, error & 0x1 ? "protection violation" : "not mapped");
    else if (error)
        snprintf(what, sizeof(what), "%s, error code 0x%llx", name, (unsigned long long)error);
    else
        snprintf(what, sizeof(what), "%s", name);
    return fault(km, signo, what, rip);
}

static int report_internal_error(struct km *km)
{
    uint64_t rip = km_guest_rip(km);
    char what[192];
    const uint8_t *code = km_gptr(km, rip, 4);

    if (km->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION && !code)
        return fault(km, SIGSEGV, "executing outside guest memory", rip);
    if (km->run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
        snprintf(what, sizeof(what),
                 "instruction %02x %02x %02x %02x cannot be executed (KVM emulation failure; "
                 "x87/SSE are unavailable in guests on this host: build with -mgeneral-regs-only)",
                 code[0], code[1], code[2], code[3]);
        return fault(km, SIGILL, what, rip);
    }
    snprintf(what, sizeof(what), "KVM internal error %u", km->run->internal.suberror);
    return fault(km, SIGABRT, what, rip);
}

static int handle_exit(struct km *km, bool *keep_running)
{
    struct kvm_run *run = km->run;
    char what[128];

    *keep_running = false;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port >= KM_HC_PORT_BASE &&
            run->io.port < KM_HC_PORT_BASE + KM_HC_MAX) {
            *keep_running = km_hcall(km, run->io.port - KM_HC_PORT_BASE);
            return km->exit_code;
        }
        if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == KM_FAULT_PORT)
            return report_exception(km);
        snprintf(what, sizeof(what), "I/O to port 0x%x (not a hypercall)", run->io.port);
        return fault(km, SIGSEGV, what, km_guest_rip(km));
    case KVM_EXIT_MMIO:
        snprintf(what, sizeof(what), "%s address 0x%llx (outside allocated guest memory)",
                 run->mmio.is_write ? "writing" : "reading", (unsigned long long)run->mmio.phys_addr);
        return fault(km, SIGSEGV, what, km_guest_rip(km));
    case KVM_EXIT_HLT:
        return fault(km, SIGABRT, "hlt instruction", km_guest_rip(km));
    case KVM_EXIT_SHUTDOWN:
        return fault(km, SIGABRT, "triple fault (VM shutdown)", km_guest_rip(km));
    case KVM_EXIT_FAIL_ENTRY:
        snprintf(what, sizeof(what), "VM entry failed (hardware reason 0x%llx)",
                 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return fault(km, SIGABRT, what, km_guest_rip(km));
    case KVM_EXIT_INTERNAL_ERROR:
        return report_internal_error(km);
    default:
        snprintf(what, sizeof(what), "unexpected KVM exit reason %u", run->exit_reason);
        return fault(km, SIGABRT, what, km_guest_rip(km));
    }
}

int km_vm_run(struct km *km)
{
    bool keep_running = true;
    int rc = 0;

    while (keep_running) {
        if (ioctl(km->vcpu_fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            km_err(km, "KVM_RUN failed: %s", km_strerror(errno));
            return KM_EXIT_ABORT;
        }
        rc = handle_exit(km, &keep_running);
    }
    if (km->trace)
        km_trace(km, "km exiting with status %d", rc);
    return rc;
}
