/*
 * Core files. When the payload dies of a signal whose default action dumps
 * core (SIGSEGV, SIGILL, SIGQUIT...), KM writes an ELF core of the guest,
 * ./kmcore (in the payload's cwd) or --coredump=FILE, which gdb reads with
 * the payload: `gdb payload.km kmcore`.
 *
 * Layout: ELF header (ET_CORE, EM_X86_64), program headers (one PT_NOTE,
 * then one PT_LOAD per run of guest pages in use), the notes (NT_PRSTATUS
 * with the guest's registers, NT_PRPSINFO), then page-aligned segment
 * contents. All-zero pages are left as holes, so a mostly empty 2 MiB stack
 * costs nothing on disk. A failure only costs the core: it is noted in the
 * death report.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/procfs.h>
#include <sys/user.h>
#include <unistd.h>

#include "km.h"

#define MAX_SEGMENTS 1024           /* runs beyond this are merged with their neighbours */
#define NOTE_NAME "CORE"

struct run {
    uint64_t start, end;
};

/* Runs of used guest pages (above KM's page tables); returns how many. */
static int used_runs(const struct km *km, struct run *runs)
{
    int n = 0;
    for (uint64_t pg = KM_GUEST_BASE / KM_PAGE_SIZE; pg < KM_GUEST_PAGES; pg++) {
        if (!km_page_in_use(km, pg))
            continue;
        uint64_t start = pg;
        while (pg < KM_GUEST_PAGES && km_page_in_use(km, pg))
            pg++;
        if (n == MAX_SEGMENTS)
            runs[n - 1].end = pg * KM_PAGE_SIZE;
        else
            runs[n++] = (struct run){ start * KM_PAGE_SIZE, pg * KM_PAGE_SIZE };
    }
    return n;
}

static size_t note_size(size_t desc)
{
    return sizeof(Elf64_Nhdr) + ((sizeof(NOTE_NAME) + 3) & ~3UL) + ((desc + 3) & ~3UL);
}

static uint8_t *put_note(uint8_t *p, uint32_t type, const void *desc, size_t len)
{
    Elf64_Nhdr nh = { .n_namesz = sizeof(NOTE_NAME), .n_descsz = (uint32_t)len, .n_type = type };
    memcpy(p, &nh, sizeof(nh));
    p += sizeof(nh);
    memcpy(p, NOTE_NAME, sizeof(NOTE_NAME));
    p += (sizeof(NOTE_NAME) + 3) & ~3UL;
    memcpy(p, desc, len);
    return p + ((len + 3) & ~3UL);
}

static void fill_prstatus(struct km *km, int sig, const struct kvm_regs *r, struct elf_prstatus *ps)
{
    struct user_regs_struct u = {
        .r15 = r->r15, .r14 = r->r14, .r13 = r->r13, .r12 = r->r12, .rbp = r->rbp,
        .rbx = r->rbx, .r11 = r->r11, .r10 = r->r10, .r9 = r->r9, .r8 = r->r8,
        .rax = r->rax, .rcx = r->rcx, .rdx = r->rdx, .rsi = r->rsi, .rdi = r->rdi,
        .orig_rax = (unsigned long long)-1, .rip = r->rip, .cs = KM_SEL_CODE,
        .eflags = r->rflags, .rsp = r->rsp, .ss = KM_SEL_DATA,
        .fs_base = km_guest_fs_base(km),
    };
    _Static_assert(sizeof(u) == sizeof(ps->pr_reg), "elf_gregset_t is user_regs_struct");
    memset(ps, 0, sizeof(*ps));
    ps->pr_info.si_signo = ps->pr_cursig = (short)sig;
    ps->pr_sighold = km_signals_mask(km);
    ps->pr_pid = getpid();
    ps->pr_ppid = getppid();
    ps->pr_pgrp = getpgrp();
    ps->pr_sid = getsid(0);
    memcpy(&ps->pr_reg, &u, sizeof(u));
}

void km_core_prstatus(struct km *km, const struct kvm_regs *r, struct elf_prstatus *ps)
{
    fill_prstatus(km, 0, r, ps);
}

static void fill_prpsinfo(struct km *km, struct elf_prpsinfo *pi)
{
    memset(pi, 0, sizeof(*pi));
    pi->pr_sname = 'R';
    pi->pr_uid = getuid();
    pi->pr_gid = getgid();
    pi->pr_pid = getpid();
    pi->pr_ppid = getppid();
    pi->pr_pgrp = getpgrp();
    pi->pr_sid = getsid(0);
    const char *name = strrchr(km->opt.payload, '/');
    snprintf(pi->pr_fname, sizeof(pi->pr_fname), "%s", name ? name + 1 : km->opt.payload);
    size_t off = 0;
    for (int i = 0; i < km->opt.payload_argc && off + 1 < sizeof(pi->pr_psargs); i++)
        off += (size_t)snprintf(pi->pr_psargs + off, sizeof(pi->pr_psargs) - off, "%s%s",
                                i ? " " : "", km->opt.payload_argv[i]);
}

/* Segment contents, skipping zero pages (holes read back as zeros). */
static bool write_segment(struct km *km, int fd, const struct run *r, uint64_t off)
{
    for (uint64_t a = r->start; a < r->end;) {
        if (km_zero_page(km->mem + a)) {
            a += KM_PAGE_SIZE;
            continue;
        }
        uint64_t b = a + KM_PAGE_SIZE;
        while (b < r->end && !km_zero_page(km->mem + b))
            b += KM_PAGE_SIZE;
        if (!km_pwrite_all(fd, km->mem + a, b - a, off + (a - r->start)))
            return false;
        a = b;
    }
    return true;
}

static int write_core(struct km *km, int fd, int sig, const struct kvm_regs *regs)
{
    static struct run runs[MAX_SEGMENTS];
    int nruns = used_runs(km, runs);
    struct elf_prstatus ps;
    struct elf_prpsinfo pi;

    size_t notes = note_size(sizeof(ps)) + note_size(sizeof(pi));
    size_t headers = sizeof(Elf64_Ehdr) + (size_t)(nruns + 1) * sizeof(Elf64_Phdr);
    uint64_t data = km_page_up(headers + notes), off = data;
    uint8_t *head = calloc(1, headers + notes);
    if (!head)
        return ENOMEM;

    Elf64_Ehdr *eh = (Elf64_Ehdr *)head;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_ident[EI_OSABI] = ELFOSABI_NONE;
    eh->e_type = ET_CORE;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_phoff = sizeof(Elf64_Ehdr);
    eh->e_ehsize = sizeof(Elf64_Ehdr);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = (uint16_t)(nruns + 1);

    Elf64_Phdr *ph = (Elf64_Phdr *)(head + sizeof(Elf64_Ehdr));
    ph[0] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = headers, .p_filesz = notes, .p_align = 4 };
    for (int i = 0; i < nruns; i++) {
        uint64_t len = runs[i].end - runs[i].start;
        ph[i + 1] = (Elf64_Phdr){
            .p_type = PT_LOAD, .p_flags = PF_R | PF_W | PF_X, .p_offset = off,
            .p_vaddr = runs[i].start, .p_paddr = runs[i].start, .p_filesz = len,
            .p_memsz = len, .p_align = KM_PAGE_SIZE,
        };
        off += len;
    }
    fill_prstatus(km, sig, regs, &ps);
    fill_prpsinfo(km, &pi);
    uint8_t *p = put_note(head + headers, NT_PRSTATUS, &ps, sizeof(ps));
    put_note(p, NT_PRPSINFO, &pi, sizeof(pi));

    bool ok = km_pwrite_all(fd, head, headers + notes, 0);
    for (int i = 0; ok && i < nruns; i++)
        ok = write_segment(km, fd, &runs[i], ph[i + 1].p_offset);
    free(head);
    /* The file must be as long as the headers say, trailing holes included. */
    if (ok && ftruncate(fd, (off_t)off) < 0)
        ok = false;
    return ok ? 0 : errno ? errno : EIO;
}

void km_write_core(struct km *km, int sig, const struct kvm_regs *regs, char *note, size_t size)
{
    const char *path = km->opt.coredump ? km->opt.coredump : "./kmcore";

    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    int err = fd < 0 ? errno : write_core(km, fd, sig, regs);
    if (fd >= 0)
        close(fd);
    if (err)
        snprintf(note, size, "; cannot write the core file %s: %s", path, km_strerror(err));
    else
        snprintf(note, size, "; core dumped to %s", path);
}
