/*
 * Payload loading. A payload is a static x86-64 ELF: ET_EXEC at its own
 * addresses or ET_DYN at 2 MiB, every PT_LOAD at or above 2 MiB, no
 * PT_INTERP. Segments are read straight into guest memory.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "km.h"

#define MAX_PHNUM 128

struct elf_file {
    const char *path;
    int fd;
    uint64_t size;
    Elf64_Ehdr eh;
    Elf64_Phdr ph[MAX_PHNUM];
    uint64_t bias;                  /* added to p_vaddr (ET_DYN only) */
};

static int open_payload(struct km *km, struct elf_file *f)
{
    struct stat st;

    f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) {
        int err = errno;
        km_err(km, "%s: %s", f->path, km_strerror(err));
        return err == ENOENT || err == ENOTDIR ? KM_EXIT_NOTFOUND : KM_EXIT_NOEXEC;
    }
    if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        km_err(km, "%s: not a regular file", f->path);
        return KM_EXIT_NOEXEC;
    }
    f->size = (uint64_t)st.st_size;
    return 0;
}

static bool read_exact(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return true;
}

/* Returns NULL if the header is acceptable, else the reason. */
static const char *check_header(const Elf64_Ehdr *eh, uint64_t size)
{
    if (size < SELFMAG || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
        return "not an ELF file";
    if (size <= EI_DATA)
        return "truncated ELF file";
    if (eh->e_ident[EI_CLASS] != ELFCLASS64)
        return eh->e_ident[EI_CLASS] == ELFCLASS32
            ? "32-bit ELF; a 64-bit x86-64 payload is required"
            : "unsupported ELF class; a 64-bit x86-64 payload is required";
    if (eh->e_ident[EI_DATA] != ELFDATA2LSB)
        return "not a little-endian ELF; an x86-64 payload is required";
    if (size < sizeof(*eh))
        return "truncated ELF file";
    if (eh->e_machine != EM_X86_64)
        return "not an x86-64 ELF (wrong machine)";
    if (eh->e_type == ET_CORE)
        return "KM snapshots (ET_CORE) are not supported";
    if (eh->e_type != ET_EXEC && eh->e_type != ET_DYN)
        return "not an executable ELF (need ET_EXEC or ET_DYN)";
    if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0)
        return "ELF file has no usable program headers";
    if (eh->e_phnum > MAX_PHNUM)
        return "ELF file has too many program headers";
    if (eh->e_phoff > size || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > size - eh->e_phoff)
        return "truncated ELF file";
    return NULL;
}

static uint64_t lowest_vaddr(const struct elf_file *f)
{
    uint64_t low = UINT64_MAX;
    for (int i = 0; i < f->eh.e_phnum; i++)
        if (f->ph[i].p_type == PT_LOAD && f->ph[i].p_vaddr < low)
            low = f->ph[i].p_vaddr;
    return low;
}

static int check_segments(struct km *km, const struct elf_file *f)
{
    const uint64_t limit = KM_GUEST_TOP - KM_STACK_SIZE;
    int loads = 0;

    for (int i = 0; i < f->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &f->ph[i];
        if (p->p_type == PT_INTERP) {
            km_err(km, "%s: dynamically linked (has PT_INTERP); KM payloads must be static", f->path);
            return KM_EXIT_NOEXEC;
        }
        if (p->p_type != PT_LOAD)
            continue;
        loads++;
        uint64_t start = p->p_vaddr + f->bias;
        if (start < f->bias || start < KM_GUEST_BASE) {
            km_err(km, "%s: segment at 0x%llx is below 2 MiB (0x%x); link with -Wl,-Ttext-segment=0x200000",
                   f->path, (unsigned long long)p->p_vaddr, KM_GUEST_BASE);
            return KM_EXIT_NOEXEC;
        }
        if (p->p_filesz > p->p_memsz || start > limit || p->p_memsz > limit - start) {
            km_err(km, "%s: segment at 0x%llx does not fit in guest memory", f->path,
                   (unsigned long long)p->p_vaddr);
            return KM_EXIT_NOEXEC;
        }
        if (p->p_offset > f->size || p->p_filesz > f->size - p->p_offset) {
            km_err(km, "%s: truncated ELF file", f->path);
            return KM_EXIT_NOEXEC;
        }
    }
    if (loads == 0) {
        km_err(km, "%s: ELF file has no loadable segments", f->path);
        return KM_EXIT_NOEXEC;
    }
    return 0;
}

static bool entry_is_loaded(const struct elf_file *f, uint64_t entry)
{
    for (int i = 0; i < f->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &f->ph[i];
        if (p->p_type == PT_LOAD && entry >= p->p_vaddr + f->bias &&
            entry - (p->p_vaddr + f->bias) < p->p_memsz)
            return true;
    }
    return false;
}

/* Where the program headers are in guest memory, for AT_PHDR. */
static uint64_t phdr_address(const struct elf_file *f)
{
    for (int i = 0; i < f->eh.e_phnum; i++)
        if (f->ph[i].p_type == PT_PHDR)
            return f->ph[i].p_vaddr + f->bias;
    for (int i = 0; i < f->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &f->ph[i];
        if (p->p_type == PT_LOAD && f->eh.e_phoff >= p->p_offset &&
            f->eh.e_phoff - p->p_offset < p->p_filesz)
            return p->p_vaddr + f->bias + (f->eh.e_phoff - p->p_offset);
    }
    return 0;
}

static int load_segments(struct km *km, const struct elf_file *f, struct km_image *img)
{
    img->end = 0;
    for (int i = 0; i < f->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &f->ph[i];
        if (p->p_type != PT_LOAD)
            continue;
        uint64_t start = p->p_vaddr + f->bias;
        /* Bytes past p_filesz stay zero: the pages are fresh. */
        if (p->p_filesz && !read_exact(f->fd, km->mem + start, p->p_filesz, p->p_offset)) {
            km_err(km, "%s: truncated ELF file", f->path);
            return KM_EXIT_NOEXEC;
        }
        km_pages_reserve(km, start, start + p->p_memsz);
        if (start + p->p_memsz > img->end)
            img->end = start + p->p_memsz;
    }
    return 0;
}

static int load(struct km *km, struct elf_file *f, struct km_image *img)
{
    const char *why;
    int rc;

    if ((rc = open_payload(km, f)) != 0)
        return rc;
    memset(&f->eh, 0, sizeof(f->eh));
    if (pread(f->fd, &f->eh, sizeof(f->eh), 0) < 0) {
        km_err(km, "%s: %s", f->path, km_strerror(errno));
        return KM_EXIT_NOEXEC;
    }
    if ((why = check_header(&f->eh, f->size)) != NULL) {
        km_err(km, "%s: %s", f->path, why);
        return KM_EXIT_NOEXEC;
    }
    if (!read_exact(f->fd, f->ph, f->eh.e_phnum * sizeof(Elf64_Phdr), f->eh.e_phoff)) {
        km_err(km, "%s: truncated ELF file", f->path);
        return KM_EXIT_NOEXEC;
    }
    /* Kontain's convention: position-independent payloads are loaded at 2 MiB. */
    f->bias = 0;
    if (f->eh.e_type == ET_DYN && lowest_vaddr(f) < KM_GUEST_BASE)
        f->bias = KM_GUEST_BASE - km_page_down(lowest_vaddr(f));
    if ((rc = check_segments(km, f)) != 0)
        return rc;
    img->entry = f->eh.e_entry + f->bias;
    if (!entry_is_loaded(f, img->entry)) {
        km_err(km, "%s: entry point 0x%llx is outside the loaded segments", f->path,
               (unsigned long long)f->eh.e_entry);
        return KM_EXIT_NOEXEC;
    }
    img->phdr = phdr_address(f);
    img->phnum = f->eh.e_phnum;
    return load_segments(km, f, img);
}

int km_load_elf(struct km *km, const char *path, struct km_image *img)
{
    static struct elf_file f;
    f.path = path;
    f.fd = -1;
    int rc = load(km, &f, img);
    if (f.fd >= 0)
        close(f.fd);
    return rc;
}
