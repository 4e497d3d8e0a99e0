/*
 * Snapshots: the payload's whole state as an ELF ET_CORE file that
 * `km SNAPSHOT` resumes (resume.c). Kontain's shape: one PT_NOTE, then a
 * PT_LOAD per run of non-zero guest pages in use (page-aligned offsets, so
 * resume can map them), so a small payload gives a small file.
 *
 * Notes: NT_PRSTATUS ("CORE", for gdb), then KM's own ("KRUN", snap.h):
 * IDENT (version, CPU digest, label), VCPU, MEM (brk, page bitmap), SIG,
 * CWD, one FILE per open guest fd >= 3, and CHECK last: FNV-1a 64 of every
 * byte of the file before it, so a flipped byte in the headers or notes is
 * caught without hashing guest memory.
 *
 * Also here: hypercall 505 and the CPU-feature digest.
 */
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/procfs.h>
#include <sys/stat.h>
#include <unistd.h>

#include "km.h"
#include "snap.h"

#define MAX_RUNS 8192           /* beyond this, runs are merged (zero pages then cost file space) */

struct buf {
    uint8_t *p;
    size_t len, cap;
    bool failed;
};

struct run {
    uint64_t start, end;
};

static void buf_put(struct buf *b, const void *data, size_t len)
{
    if (b->failed)
        return;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (data)
        memcpy(b->p + b->len, data, len);
    else
        memset(b->p + b->len, 0, len);
    b->len += len;
}

static void pad4(struct buf *b)
{
    static const uint8_t zero[4];
    buf_put(b, zero, (4 - b->len % 4) % 4);
}

/* The note's header and name; its desc follows (note_desc). */
static void note_head(struct buf *b, const char *name, uint32_t type, size_t desclen)
{
    Elf64_Nhdr nh = { .n_namesz = (uint32_t)strlen(name) + 1, .n_descsz = (uint32_t)desclen,
                      .n_type = type };
    buf_put(b, &nh, sizeof(nh));
    buf_put(b, name, nh.n_namesz);
    pad4(b);
}

static void note(struct buf *b, const char *name, uint32_t type, const void *desc, size_t len)
{
    note_head(b, name, type, len);
    buf_put(b, desc, len);
    pad4(b);
}

/*
 * KVM fills in the APIC ID of the host CPU that ran the ioctl: not a
 * feature, and different from one run to the next.
 */
static void filter_cpuid(struct kvm_cpuid2 *c)
{
    for (uint32_t i = 0; i < c->nent; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[i];
        if (e->function == 1)
            e->ebx &= 0x00ffffff;
        else if (e->function == 0xb || e->function == 0x1f)
            e->edx = 0;
        else if (e->function == 0x8000001e)
            e->eax = 0;
    }
}

uint64_t km_cpu_digest(int kvm_fd)
{
    int nent = 256;
    for (;;) {
        struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)nent * sizeof(c->entries[0]));
        if (!c)
            return 0;
        c->nent = (uint32_t)nent;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            filter_cpuid(c);
            uint64_t h = snap_fnv(SNAP_FNV_INIT, c->entries, c->nent * sizeof(c->entries[0]));
            free(c);
            return h;
        }
        free(c);
        if (errno != E2BIG || nent >= 4096)
            return 0;
        nent *= 2;
    }
}

/* The MSRs KM programs (vm.c) and the guest may change (FS base via arch_prctl). */
static const uint32_t saved_msrs[SNAP_NMSRS] = {
    0xc0000081, /* STAR */ 0xc0000082, /* LSTAR */ 0xc0000083, /* CSTAR */
    0xc0000084, /* SYSCALL_MASK */ 0xc0000100, /* FS_BASE */ 0xc0000101, /* GS_BASE */
    0xc0000102, /* KERNEL_GS_BASE */ 0x00000277, /* PAT */
};

static bool get_vcpu(struct km *km, const struct kvm_regs *regs, struct snap_vcpu *v)
{
    km_vcpu_sync(km);
    if (regs)
        v->regs = *regs;
    else if (!km_get_regs(km, &v->regs))
        return false;
    if (ioctl(km->vcpu_fd, KVM_GET_SREGS, &v->sregs) < 0 ||
        ioctl(km->vcpu_fd, KVM_GET_FPU, &v->fpu) < 0)
        return false;
    v->has_xsave = ioctl(km->vcpu_fd, KVM_GET_XSAVE, v->xsave) == 0;
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[SNAP_NMSRS];
    } m = { .hdr.nmsrs = SNAP_NMSRS };
    for (int i = 0; i < SNAP_NMSRS; i++)
        m.e[i].index = saved_msrs[i];
    int n = ioctl(km->vcpu_fd, KVM_GET_MSRS, &m);
    if (n < 0)
        return false;
    v->nmsrs = (uint32_t)n;     /* KVM stops at the first MSR it does not know */
    memcpy(v->msrs, m.e, sizeof(m.e));
    memcpy(v->gs_slot, km->mem + KM_PRIV_BASE + KM_PRIV_GS, KM_GS_SLOT_SIZE);
    return true;
}

static const char *fd_kind(mode_t m)
{
    switch (m & S_IFMT) {
    case S_IFIFO: return "a pipe";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    default: return "not a regular file or directory";
    }
}

/* One FILE note for guest fd; -ENOTSUP (err says why) if it cannot be reopened on resume. */
static int file_note(struct km *km, struct buf *b, int fd, char *err, size_t errlen)
{
    struct stat st;
    char proc[64], path[PATH_MAX];

    if (fstat(fd, &st) < 0)
        return 0;               /* closed meanwhile */
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "cannot snapshot: guest fd %d is %s (only regular files and "
                 "directories can be reopened on resume)", fd, fd_kind(st.st_mode));
        return -ENOTSUP;
    }
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, path, sizeof(path) - 1);
    if (n <= 0 || path[0] != '/') {
        snprintf(err, errlen, "cannot snapshot: guest fd %d: its path is unknown", fd);
        return -ENOTSUP;
    }
    path[n] = '\0';
    if (n > 10 && strcmp(path + n - 10, " (deleted)") == 0) {
        snprintf(err, errlen, "cannot snapshot: guest fd %d: %.200s was deleted", fd, path);
        return -ENOTSUP;
    }
    struct snap_file f = {
        .fd = fd, .fd_flags = fcntl(fd, F_GETFD), .fl_flags = fcntl(fd, F_GETFL),
        .offset = lseek(fd, 0, SEEK_CUR),
    };
    (void)km;
    note_head(b, SNAP_NOTE_NAME, NT_KM_FILE, sizeof(f) + (size_t)n + 1);
    buf_put(b, &f, sizeof(f));
    buf_put(b, path, (size_t)n + 1);
    pad4(b);
    return 0;
}

static bool guest_fd(struct km *km, int fd)
{
    return fd >= 3 && fd < km->fd_floor && !km_is_private_fd(km, fd);
}

/* FILE notes for every guest fd >= 3, in ascending order (resume relies on it). */
static int file_notes(struct km *km, struct buf *b, char *err, size_t errlen)
{
    static int fds[1024];
    int n = 0, rc = 0;
    DIR *d = opendir("/proc/self/fd");

    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) && n < (int)(sizeof(fds) / sizeof(fds[0]))) {
            int fd = atoi(e->d_name);
            if (e->d_name[0] != '.' && fd != dirfd(d) && guest_fd(km, fd))
                fds[n++] = fd;
        }
        closedir(d);
    } else {
        for (int fd = 3; fd < km->fd_floor && n < (int)(sizeof(fds) / sizeof(fds[0])); fd++)
            if (guest_fd(km, fd) && fcntl(fd, F_GETFD) >= 0)
                fds[n++] = fd;
    }
    for (int i = 1; i < n; i++)             /* insertion sort: few fds */
        for (int j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
    for (int i = 0; i < n && rc == 0; i++)
        rc = file_note(km, b, fds[i], err, errlen);
    return rc;
}

/* Runs of in-use, non-zero pages: zero pages need no bytes (resume starts from zeros). */
static int data_runs(const struct km *km, struct run *runs)
{
    int n = 0;
    for (uint64_t pg = KM_GUEST_BASE / KM_PAGE_SIZE; pg < KM_GUEST_PAGES; pg++) {
        if (!km_page_in_use(km, pg) || km_zero_page(km->mem + pg * KM_PAGE_SIZE))
            continue;
        uint64_t start = pg;
        while (pg < KM_GUEST_PAGES && km_page_in_use(km, pg) &&
               !km_zero_page(km->mem + pg * KM_PAGE_SIZE))
            pg++;
        if (n == MAX_RUNS)
            runs[n - 1].end = pg * KM_PAGE_SIZE;
        else
            runs[n++] = (struct run){ start * KM_PAGE_SIZE, pg * KM_PAGE_SIZE };
    }
    return n;
}

/* Every note but CHECK; 0 or -errno with err set. */
static int build_notes(struct km *km, struct buf *b, const struct kvm_regs *regs,
                       const char *label, const char *desc, char *err, size_t errlen)
{
    static struct snap_vcpu v;
    static struct snap_mem m;
    static struct snap_sig s;
    struct snap_ident id = { .format = SNAP_FORMAT };
    struct elf_prstatus ps;
    char cwd[PATH_MAX];

    memset(&v, 0, sizeof(v));
    if (!get_vcpu(km, regs, &v)) {
        snprintf(err, errlen, "cannot read the vCPU state: %s", km_strerror(errno));
        return -EIO;
    }
    km_core_prstatus(km, &v.regs, &ps);
    note(b, "CORE", NT_PRSTATUS, &ps, sizeof(ps));

    snprintf(id.version, sizeof(id.version), "%s", KM_VERSION);
    id.cpu_digest = km_cpu_digest_cached(km);
    snprintf(id.label, sizeof(id.label), "%s", label ? label : "");
    snprintf(id.desc, sizeof(id.desc), "%s", desc ? desc : "");
    note(b, SNAP_NOTE_NAME, NT_KM_IDENT, &id, sizeof(id));
    note(b, SNAP_NOTE_NAME, NT_KM_VCPU, &v, sizeof(v));

    m = (struct snap_mem){ .brk_start = km->brk_start, .brk = km->brk,
                           .chunks_wanted = km->chunks_wanted };
    memcpy(m.page_used, km->page_used, sizeof(m.page_used));
    note(b, SNAP_NOTE_NAME, NT_KM_MEM, &m, sizeof(m));

    km_signals_mask(km);                    /* makes sig.mask the real one */
    s.sig = km->sig;
    if (s.sig.in_suspend) {                 /* recorded before the call: resume re-issues it */
        s.sig.mask = s.sig.suspend_restore;
        s.sig.in_suspend = false;
    }
    s.sig.intr = 0;
    s.held = km_sig_held;
    note(b, SNAP_NOTE_NAME, NT_KM_SIG, &s, sizeof(s));

    if (!getcwd(cwd, sizeof(cwd))) {
        snprintf(err, errlen, "cannot snapshot: getcwd: %s", km_strerror(errno));
        return -errno;
    }
    note(b, SNAP_NOTE_NAME, NT_KM_CWD, cwd, strlen(cwd) + 1);
    return file_notes(km, b, err, errlen);
}

static void fill_ehdr(Elf64_Ehdr *eh, int phnum)
{
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_CORE;
    eh->e_machine = EM_X86_64;
    eh->e_version = EV_CURRENT;
    eh->e_phoff = sizeof(Elf64_Ehdr);
    eh->e_ehsize = sizeof(Elf64_Ehdr);
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = (uint16_t)phnum;
}

static int write_snapshot(struct km *km, int fd, struct buf *notes, uint64_t *size,
                          char *err, size_t errlen)
{
    static struct run runs[MAX_RUNS];
    int nruns = data_runs(km, runs);
    size_t headers = sizeof(Elf64_Ehdr) + (size_t)(nruns + 1) * sizeof(Elf64_Phdr);
    size_t notes_len = notes->len + snap_note_size(sizeof(SNAP_NOTE_NAME), sizeof(uint64_t));
    uint64_t off = km_page_up(headers + notes_len);
    uint8_t *head = calloc(1, headers);

    if (!head) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    fill_ehdr((Elf64_Ehdr *)head, nruns + 1);
    Elf64_Phdr *ph = (Elf64_Phdr *)(head + sizeof(Elf64_Ehdr));
    ph[0] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = headers, .p_filesz = notes_len,
                          .p_align = 4 };
    for (int i = 0; i < nruns; i++) {
        uint64_t len = runs[i].end - runs[i].start;
        ph[i + 1] = (Elf64_Phdr){
            .p_type = PT_LOAD, .p_flags = PF_R | PF_W | PF_X, .p_offset = off,
            .p_vaddr = runs[i].start, .p_paddr = runs[i].start, .p_filesz = len,
            .p_memsz = len, .p_align = KM_PAGE_SIZE,
        };
        off += len;
    }
    note_head(notes, SNAP_NOTE_NAME, NT_KM_CHECK, sizeof(uint64_t));
    uint64_t sum = snap_fnv(snap_fnv(SNAP_FNV_INIT, head, headers), notes->p, notes->len);
    buf_put(notes, &sum, sizeof(sum));
    bool ok = !notes->failed && km_pwrite_all(fd, head, headers, 0) &&
              km_pwrite_all(fd, notes->p, notes->len, headers);
    for (int i = 0; ok && i < nruns; i++)
        ok = km_pwrite_all(fd, km->mem + runs[i].start, ph[i + 1].p_filesz, ph[i + 1].p_offset);
    free(head);
    if (ok && ftruncate(fd, (off_t)off) < 0)
        ok = false;
    if (!ok) {
        int e = errno ? errno : EIO;
        snprintf(err, errlen, "cannot write the snapshot: %s", km_strerror(e));
        return -e;
    }
    *size = off;
    return 0;
}

int km_snapshot_write(struct km *km, int fd, const struct kvm_regs *regs, const char *label,
                      const char *desc, uint64_t *size, char *err, size_t errlen)
{
    struct buf notes = { 0 };
    int rc = build_notes(km, &notes, regs, label, desc, err, errlen);
    if (rc == 0 && notes.failed) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
    }
    if (rc == 0)
        rc = write_snapshot(km, fd, &notes, size, err, errlen);
    free(notes.p);
    return rc;
}

/* Writes PATH atomically: a temporary file next to it, renamed over it when complete. */
static int write_file(struct km *km, const char *path, const char *label, const char *desc,
                      uint64_t *size, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "%.200s: file name too long", path);
        return -ENAMETOOLONG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%.200s: %s", tmp, km_strerror(e));
        return -e;
    }
    fd = km_hide_fd(km, fd);                /* not a guest fd: the snapshot skips it */
    int rc = km_snapshot_write(km, fd, NULL, label, desc, size, err, errlen);
    if (rc == 0 && fsync(fd) < 0) {
        rc = -errno;
        snprintf(err, errlen, "%.200s: fsync: %s", tmp, km_strerror(errno));
    }
    close(fd);
    if (rc == 0 && rename(tmp, path) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot rename %.200s to %.200s: %s", tmp, path, km_strerror(errno));
    }
    if (rc != 0)
        unlink(tmp);
    return rc;
}

/* An optional guest string (0: none); NULL if the pointer is bad. Notes truncate it. */
static const char *opt_string(struct km *km, uint64_t gva)
{
    int err;
    return gva == 0 ? "" : km_gstr(km, gva, &err);
}

/*
 * Hypercall 505 (Kontain's): snapshot(label, description, live). The
 * resumed instance, and a live original, see 0; not live, KM exits 0 after
 * writing. On failure the payload gets -errno and goes on.
 */
int64_t km_hc_snapshot(struct km *km, const uint64_t *a)
{
    const char *label = opt_string(km, a[0]), *desc = opt_string(km, a[1]);
    const char *path = km->opt.snapshot ? km->opt.snapshot : KM_SNAP_DEFAULT;
    char err[512];
    uint64_t slot, zero = 0, size = 0;

    if (!label || !desc)
        return -EFAULT;
    /* The resumed instance returns from the call: its result must already be there. */
    memcpy(&slot, km->mem + KM_PRIV_BASE + KM_PRIV_GS, sizeof(slot));
    void *ret = km_gptr(km, slot, sizeof(zero));
    if (!ret)
        return -EFAULT;
    memcpy(ret, &zero, sizeof(zero));
    int rc = write_file(km, path, label, desc, &size, err, sizeof(err));
    if (rc < 0) {
        km_err(km, "SNAP: %s", err);
        return rc;
    }
    if (km->trace)
        km_trace(km, "snapshot %s written (%llu bytes, label \"%s\")%s", path,
                 (unsigned long long)size, label, a[2] ? ", live" : "; exiting");
    if (!a[2]) {
        km->exit_code = 0;
        km->stop = true;
    }
    return 0;
}
