/*
 * Resume: `km [options] SNAPSHOT` goes on where a snapshot (snapshot.c)
 * stopped the payload. Everything is checked before anything is used: a
 * truncated or corrupted file, notes out of bounds, a segment beyond the
 * file or outside guest memory, a missing note, a wrong checksum is "km:
 * SNAP: not a valid snapshot: WHY"; another KM version or CPU feature set
 * is refused in one line too. All exit 1.
 *
 * Guest memory of a big snapshot is mapped MAP_PRIVATE from the file (its
 * PT_LOAD offsets are page-aligned), so pages are read only when the guest
 * touches them; that file must then not be truncated while the instance
 * runs (KM's own --snapshot files are replaced by rename, and the management
 * socket refuses to write into it). Small snapshots are simply read.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "km.h"
#include "ksignal.h"
#include "snap.h"

#define MAX_PREFIX  (64u << 20)     /* headers + notes: far more than KM ever writes */
#define MAX_FILES   1024
#ifndef KM_RESUME_MAP_MIN
#define KM_RESUME_MAP_MIN (64ULL << 20)   /* memory in the file from which it is mapped */
#endif

static struct {
    int fd;
    uint64_t size;
    uint8_t *prefix;                /* the file from 0 to the end of the notes */
    const Elf64_Phdr *ph;
    int phnum;
    const struct snap_ident *ident;
    const struct snap_vcpu *vcpu;
    const struct snap_mem *mem;
    const struct snap_sig *sig;
    const char *cwd;
    const struct snap_file *files[MAX_FILES];
    int nfiles;
    char why[300];
} s;

static bool bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s.why, sizeof(s.why), fmt, ap);
    va_end(ap);
    return false;
}

static bool exact(uint32_t got, size_t want, const char *what)
{
    return got == want ? true : bad("the %s note has the wrong size", what);
}

/* One KRUN note; false (s.why) if it is malformed. */
static bool take_note(uint32_t type, const uint8_t *desc, uint32_t len)
{
    switch (type) {
    case NT_KM_IDENT:
        s.ident = (const void *)desc;
        return exact(len, sizeof(*s.ident), "IDENT");
    case NT_KM_VCPU:
        s.vcpu = (const void *)desc;
        if (!exact(len, sizeof(*s.vcpu), "VCPU"))
            return false;
        return s.vcpu->nmsrs <= SNAP_NMSRS ? true : bad("the VCPU note is malformed");
    case NT_KM_MEM:
        s.mem = (const void *)desc;
        return exact(len, sizeof(*s.mem), "MEM");
    case NT_KM_SIG:
        s.sig = (const void *)desc;
        return exact(len, sizeof(*s.sig), "SIG");
    case NT_KM_CWD:
        s.cwd = (const char *)desc;
        return len > 1 && desc[len - 1] == '\0' ? true : bad("the CWD note is malformed");
    case NT_KM_FILE:
        if (len <= sizeof(struct snap_file) || desc[len - 1] != '\0' || s.nfiles == MAX_FILES)
            return bad("a FILE note is malformed");
        s.files[s.nfiles++] = (const void *)desc;
        return true;
    default:
        return true;                /* unknown KRUN notes: a newer writer; IDENT decides */
    }
}

/* Walks the notes in [off, off+len) of the prefix; the CHECK note must be last and right. */
static bool walk_notes(uint64_t off, uint64_t len)
{
    uint64_t p = off, end = off + len;
    bool checked = false;

    while (p < end) {
        Elf64_Nhdr nh;
        if (end - p < sizeof(nh))
            return bad("note header out of bounds");
        memcpy(&nh, s.prefix + p, sizeof(nh));
        uint64_t name = p + sizeof(nh), desc = name + ((nh.n_namesz + 3ULL) & ~3ULL);
        uint64_t next = desc + ((nh.n_descsz + 3ULL) & ~3ULL);
        if (desc > end || next > end)
            return bad("note out of bounds");
        if (checked)
            return bad("notes after the checksum");
        bool ours = nh.n_namesz == sizeof(SNAP_NOTE_NAME) &&
                    memcmp(s.prefix + name, SNAP_NOTE_NAME, sizeof(SNAP_NOTE_NAME)) == 0;
        if (ours && nh.n_type == NT_KM_CHECK) {
            uint64_t want;
            if (nh.n_descsz != sizeof(want))
                return bad("the CHECK note has the wrong size");
            memcpy(&want, s.prefix + desc, sizeof(want));
            if (snap_fnv(SNAP_FNV_INIT, s.prefix, desc) != want)
                return bad("checksum mismatch (the file is corrupted)");
            checked = true;
        } else if (ours && !take_note(nh.n_type, s.prefix + desc, nh.n_descsz)) {
            return false;
        }
        p = next;
    }
    if (!s.ident && !s.vcpu && !checked)
        return bad("it has no krun-km notes (an ELF core file, not a krun-km snapshot?)");
    if (!checked)
        return bad("the checksum note is missing");
    const char *missing = !s.ident ? "IDENT" : !s.vcpu ? "VCPU" : !s.mem ? "MEM"
                        : !s.sig ? "SIG" : !s.cwd ? "CWD" : NULL;
    return missing ? bad("the %s note is missing", missing) : true;
}

static bool check_header(const Elf64_Ehdr *eh)
{
    if (s.size < sizeof(*eh))
        return bad("truncated ELF header");
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_machine != EM_X86_64 || eh->e_type != ET_CORE)
        return bad("bad ELF header");
    if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum == PN_XNUM)
        return bad("bad program header table");
    uint64_t phend = eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr);
    if (eh->e_phoff < sizeof(*eh) || phend > s.size)
        return bad("program headers beyond the end of the file (truncated?)");
    return true;
}

static bool check_segments(void)
{
    for (int i = 0; i < s.phnum; i++) {
        const Elf64_Phdr *p = &s.ph[i];
        if (p->p_type != PT_LOAD)
            continue;
        if (p->p_offset % KM_PAGE_SIZE || p->p_vaddr % KM_PAGE_SIZE || p->p_filesz % KM_PAGE_SIZE ||
            p->p_memsz != p->p_filesz)
            return bad("segment %d is not page-aligned", i);
        if (!km_range_ok(p->p_vaddr, p->p_filesz))
            return bad("segment %d at 0x%llx is outside guest memory", i,
                       (unsigned long long)p->p_vaddr);
        if (p->p_offset > s.size || p->p_filesz > s.size - p->p_offset)
            return bad("segment %d extends beyond the end of the file (truncated?)", i);
        /* Free pages must read as zero (gmem.c): a segment may only fill pages in use. */
        for (uint64_t pg = p->p_vaddr / KM_PAGE_SIZE; pg < (p->p_vaddr + p->p_filesz) / KM_PAGE_SIZE; pg++)
            if (!(s.mem->page_used[pg / 64] >> (pg % 64) & 1))
                return bad("segment %d covers guest pages that are not in use", i);
    }
    return true;
}

/* Reads and checks everything but the CPU digest (that needs the VM). */
static bool load(void)
{
    Elf64_Ehdr eh;
    struct stat st;

    if (fstat(s.fd, &st) < 0)
        return bad("%s", km_strerror(errno));
    s.size = (uint64_t)st.st_size;
    memset(&eh, 0, sizeof(eh));
    if (s.size < sizeof(eh) || !km_pread_all(s.fd, &eh, sizeof(eh), 0))
        return bad("truncated ELF header");
    if (!check_header(&eh))
        return false;
    Elf64_Phdr *ph = malloc((size_t)eh.e_phnum * sizeof(*ph));
    if (!ph || !km_pread_all(s.fd, ph, (size_t)eh.e_phnum * sizeof(*ph), eh.e_phoff))
        return bad("cannot read the program headers");
    const Elf64_Phdr *note = NULL;
    for (int i = 0; i < eh.e_phnum; i++)
        if (ph[i].p_type == PT_NOTE && !note)
            note = &ph[i];
    if (!note)
        return bad("no PT_NOTE segment");
    uint64_t phend = eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(*ph);
    if (note->p_offset < phend || note->p_filesz > MAX_PREFIX ||
        note->p_offset > MAX_PREFIX || note->p_offset + note->p_filesz > s.size)
        return bad("notes out of bounds (truncated?)");
    size_t plen = (size_t)(note->p_offset + note->p_filesz);
    if (!(s.prefix = malloc(plen)) || !km_pread_all(s.fd, s.prefix, plen, 0))
        return bad("cannot read the notes");
    s.ph = (const Elf64_Phdr *)(s.prefix + eh.e_phoff);    /* the checksummed copy */
    s.phnum = eh.e_phnum;
    uint64_t noff = note->p_offset, nlen = note->p_filesz;
    free(ph);
    return walk_notes(noff, nlen) && check_segments();
}

/*
 * Big snapshots are mapped (MAP_PRIVATE: a page is read when first touched,
 * and guest writes stay private); small ones are read, which costs a few
 * milliseconds and keeps the instance independent of the file: a mapped
 * file that someone truncates makes the pages gone (SIGBUS).
 */
static bool map_segments(struct km *km)
{
    uint64_t total = 0;
    for (int i = 0; i < s.phnum; i++)
        if (s.ph[i].p_type == PT_LOAD)
            total += s.ph[i].p_filesz;
    bool lazy = total >= KM_RESUME_MAP_MIN;
    for (int i = 0; i < s.phnum; i++) {
        const Elf64_Phdr *p = &s.ph[i];
        if (p->p_type != PT_LOAD || p->p_filesz == 0)
            continue;
        void *at = km->mem + p->p_vaddr;
        if (lazy && mmap(at, p->p_filesz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, s.fd,
                         (off_t)p->p_offset) != MAP_FAILED) {
            km->file_backed = true;
            continue;
        }
        if (!km_pread_all(s.fd, at, p->p_filesz, p->p_offset))
            return bad("cannot read segment %d: %s", i, km_strerror(errno ? errno : EIO));
    }
    return true;
}

static void restore_memory_state(struct km *km)
{
    memcpy(km->page_used, s.mem->page_used, sizeof(km->page_used));
    km_pages_reserve(km, 0, KM_GUEST_BASE);
    km->chunks_wanted = 0;
    for (uint64_t c = 0; c < KM_CHUNKS; c++)
        for (uint64_t w = c * KM_CHUNK_SIZE / KM_PAGE_SIZE / 64;
             w < (c + 1) * KM_CHUNK_SIZE / KM_PAGE_SIZE / 64; w++)
            if (km->page_used[w]) {
                km->chunks_wanted |= 1ULL << c;
                break;
            }
    km->brk_start = s.mem->brk_start;
    km->brk = s.mem->brk;
}

static int set_vcpu(struct km *km)
{
    const struct snap_vcpu *v = s.vcpu;
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e[SNAP_NMSRS];
    } m = { .hdr.nmsrs = v->nmsrs };

    memcpy(m.e, v->msrs, sizeof(m.e));
    memcpy(km->mem + KM_PRIV_BASE + KM_PRIV_GS, v->gs_slot, KM_GS_SLOT_SIZE);
    if (ioctl(km->vcpu_fd, KVM_SET_SREGS, &v->sregs) < 0)
        return -1;
    if (v->nmsrs && ioctl(km->vcpu_fd, KVM_SET_MSRS, &m) != (int)v->nmsrs)
        return -1;
    if (!(v->has_xsave && ioctl(km->vcpu_fd, KVM_SET_XSAVE, v->xsave) == 0) &&
        ioctl(km->vcpu_fd, KVM_SET_FPU, &v->fpu) < 0)
        return -1;
    return ioctl(km->vcpu_fd, KVM_SET_REGS, &v->regs);
}

static int refuse(struct km *km, const char *path)
{
    km_err(km, "SNAP: %s: not a valid snapshot: %s", path, s.why);
    return KM_EXIT_SETUP;
}

int km_resume(struct km *km, const char *path)
{
    struct km_image img = { 0 };
    struct stat st;

    if ((s.fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        km_err(km, "SNAP: %s: %s", path, km_strerror(errno));
        return errno == ENOENT ? KM_EXIT_NOTFOUND : KM_EXIT_SETUP;
    }
    s.fd = km_hide_fd(km, s.fd);            /* guest fds are reopened at their numbers */
    if (!load())
        return refuse(km, path);
    if (strncmp(s.ident->version, KM_VERSION, sizeof(s.ident->version)) != 0) {
        km_err(km, "SNAP: snapshot from %.32s, this is %s", s.ident->version, KM_VERSION);
        return KM_EXIT_SETUP;
    }
    if (s.mem->brk_start < KM_GUEST_BASE || s.mem->brk < s.mem->brk_start ||
        s.mem->brk > KM_GUEST_TOP) {
        snprintf(s.why, sizeof(s.why), "brk outside guest memory");
        return refuse(km, path);
    }
    if (!map_segments(km))
        return refuse(km, path);
    if (fstat(s.fd, &st) == 0) {
        km->snap_dev = st.st_dev;
        km->snap_ino = st.st_ino;
    }
    close(s.fd);
    restore_memory_state(km);
    km_build_guest_tables(km);
    int rc = km_vm_create(km, &img, 0);
    if (rc != 0)
        return rc;
    if (km_cpu_digest_cached(km) != s.ident->cpu_digest) {
        km_err(km, "SNAP: snapshot made on a host with other CPU features");
        return KM_EXIT_SETUP;
    }
    if (set_vcpu(km) < 0) {
        km_err(km, "SNAP: cannot restore the vCPU state: %s", km_strerror(errno));
        return KM_EXIT_SETUP;
    }
    return 0;
}

static void restore_signals(struct km *km)
{
    const struct km_signals *g = &s.sig->sig;

    memcpy(km->sig.act, g->act, sizeof(km->sig.act));
    km->sig.known = g->known;
    km->sig.alt_sp = g->alt_sp;
    km->sig.alt_size = g->alt_size;
    km->sig.alt_flags = g->alt_flags;
    for (int sig = 1; sig <= KM_NSIG; sig++)
        if ((g->known & BIT(sig)) && sig != SIGKILL && sig != SIGSTOP && sig != KM_SIG_KICK)
            km_sig_set_host(sig, g->act[sig].handler);
    km_sig_set_mask(km, g->mask);
    /* Caught but not delivered when the snapshot was taken: pending again here. */
    for (int sig = 1; sig <= KM_NSIG; sig++)
        if ((s.sig->held & BIT(sig)) && sig != KM_SIG_KICK)
            syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
}

/* Guest fds >= 3 at their numbers, flags and offsets (ascending: see snapshot.c). */
static int restore_files(struct km *km)
{
    for (int i = 0; i < s.nfiles; i++) {
        const struct snap_file *f = s.files[i];
        int flags = f->fl_flags & ~(O_CREAT | O_TRUNC | O_EXCL);
        if (f->fd < 3 || f->fd >= km->fd_floor) {
            km_err(km, "SNAP: fd %d in the snapshot is out of range", f->fd);
            return KM_EXIT_SETUP;
        }
        /* O_NONBLOCK until checked: a FIFO put at the path since would block open. */
        int fd = open(f->path, flags | O_NOCTTY | O_NONBLOCK);
        struct stat st;
        if (fd < 0) {
            km_err(km, "SNAP: cannot reopen fd %d (%s): %s", f->fd, f->path, km_strerror(errno));
            return KM_EXIT_SETUP;
        }
        if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
            km_err(km, "SNAP: cannot reopen fd %d: %s is no longer a file or directory", f->fd,
                   f->path);
            return KM_EXIT_SETUP;
        }
        if (!(flags & O_NONBLOCK) && !(flags & O_PATH))
            fcntl(fd, F_SETFL, flags & ~O_NONBLOCK & (O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME));
        if (fd != f->fd) {
            if (dup2(fd, f->fd) < 0) {
                km_err(km, "SNAP: cannot reopen fd %d: %s", f->fd, km_strerror(errno));
                return KM_EXIT_SETUP;
            }
            close(fd);
        }
        fcntl(f->fd, F_SETFD, f->fd_flags & FD_CLOEXEC);
        if (f->offset >= 0 && lseek(f->fd, f->offset, SEEK_SET) < 0) {
            km_err(km, "SNAP: cannot restore the offset of fd %d (%s): %s", f->fd, f->path,
                   km_strerror(errno));
            return KM_EXIT_SETUP;
        }
    }
    return 0;
}

/* After KM's own fds are out of the way: the cwd, the guest's fds and signals. */
int km_resume_finish(struct km *km)
{
    if (chdir(s.cwd) < 0) {
        km_err(km, "SNAP: cannot restore the working directory %s: %s", s.cwd,
               km_strerror(errno));
        return KM_EXIT_SETUP;
    }
    int rc = restore_files(km);
    if (rc != 0)
        return rc;
    restore_signals(km);
    if (km->trace)
        km_trace(km, "resumed snapshot (label \"%.64s\") at RIP 0x%llx", s.ident->label,
                 (unsigned long long)s.vcpu->regs.rip);
    return 0;
}
