/*
 * Payload loading. A payload is an x86-64 ELF: ET_EXEC at its own
 * addresses or ET_DYN at 2 MiB, every PT_LOAD at or above 2 MiB. With
 * PT_INTERP it is dynamic: the loader named there (opened in KM's own view
 * of the filesystem, i.e. the container's) is loaded too, as ET_DYN at the
 * highest free place below the stack, where Linux would mmap it, and the
 * guest starts at the loader's entry with AT_BASE/AT_ENTRY telling it
 * where things are. Segments are read straight into guest memory.
 *
 * Everything is checked before anything is loaded, so the same code
 * validates an execve target (check_only) without touching guest memory.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "km.h"

#define MAX_PHNUM 128
#define MAX_ALIGN 0x200000          /* larger p_align is treated as 2 MiB */

static const char snapshot_refusal[] = "a snapshot (ET_CORE) cannot be an interpreter";

struct elf_file {
    const char *path;
    int fd;
    uint64_t size;
    Elf64_Ehdr eh;
    Elf64_Phdr ph[MAX_PHNUM];
    uint64_t bias;                  /* added to p_vaddr (ET_DYN only) */
    char interp[PATH_MAX];          /* PT_INTERP, if any */
};

int km_refuse(struct km_refusal *why, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->msg, sizeof(why->msg), fmt, ap);
    va_end(ap);
    why->err = err;
    return -err;
}

static int open_elf(struct elf_file *f, const char *what, struct km_refusal *why)
{
    struct stat st;

    f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return km_refuse(why, errno, "%s%s: %s", what, f->path, km_strerror(errno));
    if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode))
        return km_refuse(why, EACCES, "%s%s: not a regular file", what, f->path);
    f->size = (uint64_t)st.st_size;
    return 0;
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
    /* A snapshot, even a truncated one: resume.c checks (and explains) the rest. */
    if (size >= offsetof(Elf64_Ehdr, e_machine) && eh->e_type == ET_CORE)
        return snapshot_refusal;
    if (size < sizeof(*eh))
        return "truncated ELF file";
    if (eh->e_machine != EM_X86_64)
        return "not an x86-64 ELF (wrong machine)";
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

/* [lowest page, end of the highest segment) of the image, before bias. */
static uint64_t image_span(const struct elf_file *f, uint64_t *align)
{
    uint64_t end = 0;
    *align = KM_PAGE_SIZE;
    for (int i = 0; i < f->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &f->ph[i];
        if (p->p_type != PT_LOAD)
            continue;
        if (p->p_vaddr + p->p_memsz > end)
            end = p->p_vaddr + p->p_memsz;
        if (p->p_align > *align && (p->p_align & (p->p_align - 1)) == 0)
            *align = p->p_align < MAX_ALIGN ? p->p_align : MAX_ALIGN;
    }
    return km_page_up(end) - km_page_down(lowest_vaddr(f));
}

/* what: "" for the payload, "interpreter " for its PT_INTERP loader. */
static int check_segments(const struct elf_file *f, const char *what, struct km_refusal *why)
{
    const uint64_t limit = KM_GUEST_TOP - KM_STACK_SIZE;
    int loads = 0;

    for (int i = 0; i < f->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &f->ph[i];
        if (p->p_type != PT_LOAD)
            continue;
        loads++;
        uint64_t start = p->p_vaddr + f->bias;
        if (start < f->bias || start < KM_GUEST_BASE)
            return km_refuse(why, ENOEXEC, "%s%s: segment at 0x%llx is below 2 MiB (0x%x); "
                             "link with -Wl,-Ttext-segment=0x200000", what, f->path,
                             (unsigned long long)p->p_vaddr, KM_GUEST_BASE);
        if (p->p_filesz > p->p_memsz || start > limit || p->p_memsz > limit - start)
            return km_refuse(why, ENOEXEC, "%s%s: segment at 0x%llx does not fit in guest memory",
                             what, f->path, (unsigned long long)p->p_vaddr);
        if (p->p_offset > f->size || p->p_filesz > f->size - p->p_offset)
            return km_refuse(why, ENOEXEC, "%s%s: truncated ELF file", what, f->path);
    }
    if (loads == 0)
        return km_refuse(why, ENOEXEC, "%s%s: ELF file has no loadable segments", what, f->path);
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

/* PT_INTERP's path: NUL-terminated inside the file, as Linux requires. */
static int read_interp(struct elf_file *f, struct km_refusal *why)
{
    f->interp[0] = '\0';
    for (int i = 0; i < f->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &f->ph[i];
        if (p->p_type != PT_INTERP)
            continue;
        if (p->p_filesz < 2 || p->p_filesz > sizeof(f->interp) || p->p_offset > f->size ||
            p->p_filesz > f->size - p->p_offset ||
            !km_pread_all(f->fd, f->interp, p->p_filesz, p->p_offset) ||
            f->interp[p->p_filesz - 1] != '\0' || strlen(f->interp) == 0)
            return km_refuse(why, ENOEXEC, "%s: invalid PT_INTERP (interpreter path)", f->path);
        return 0;
    }
    return 0;
}

static int load_segments(struct km *km, const struct elf_file *f, const char *what,
                         uint64_t *end, struct km_refusal *why)
{
    *end = 0;
    for (int i = 0; i < f->eh.e_phnum; i++) {
        const Elf64_Phdr *p = &f->ph[i];
        if (p->p_type != PT_LOAD)
            continue;
        uint64_t start = p->p_vaddr + f->bias;
        /* Bytes past p_filesz stay zero: the pages are fresh. */
        if (p->p_filesz && !km_pread_all(f->fd, km->mem + start, p->p_filesz, p->p_offset))
            return km_refuse(why, EIO, "%s%s: truncated ELF file", what, f->path);
        km_pages_reserve(km, start, start + p->p_memsz);
        if (start + p->p_memsz > *end)
            *end = start + p->p_memsz;
    }
    return 0;
}

/*
 * Opens and checks one ELF. what: "" for the payload, "interpreter " for
 * its loader (which must not have a loader itself).
 */
static int examine(struct elf_file *f, const char *what, struct km_refusal *why)
{
    const char *bad;
    uint8_t magic[2];
    int rc;

    if ((rc = open_elf(f, what, why)) != 0)
        return rc;
    memset(&f->eh, 0, sizeof(f->eh));
    if (pread(f->fd, &f->eh, sizeof(f->eh), 0) < 0)
        return km_refuse(why, errno, "%s%s: %s", what, f->path, km_strerror(errno));
    if ((bad = check_header(&f->eh, f->size)) != NULL) {
        memcpy(magic, f->eh.e_ident, sizeof(magic));
        why->script = !*what && f->size >= 2 && magic[0] == '#' && magic[1] == '!';
        why->snapshot = !*what && bad == snapshot_refusal;
        return km_refuse(why, *what ? ELIBBAD : ENOEXEC, "%s%s: %s", what, f->path, bad);
    }
    if (!km_pread_all(f->fd, f->ph, f->eh.e_phnum * sizeof(Elf64_Phdr), f->eh.e_phoff))
        return km_refuse(why, ENOEXEC, "%s%s: truncated ELF file", what, f->path);
    if ((rc = read_interp(f, why)) != 0)
        return rc;
    if (*what && f->interp[0])
        return km_refuse(why, ELIBBAD, "%s%s: has a PT_INTERP itself (%s); a loader must be "
                         "static", what, f->path, f->interp);
    /* Kontain's convention: position-independent images are placed at 2 MiB (for now). */
    f->bias = 0;
    if (f->eh.e_type == ET_DYN && lowest_vaddr(f) < KM_GUEST_BASE)
        f->bias = KM_GUEST_BASE - km_page_down(lowest_vaddr(f));
    if ((rc = check_segments(f, what, why)) != 0)
        return rc;
    if (!entry_is_loaded(f, f->eh.e_entry + f->bias))
        return km_refuse(why, ENOEXEC, "%s%s: entry point 0x%llx is outside the loaded segments",
                         what, f->path, (unsigned long long)f->eh.e_entry);
    return 0;
}

/* The highest free place below the stack for the loader, as Linux's mmap base. */
static int place_interp(struct km *km, struct elf_file *f, struct km_refusal *why)
{
    uint64_t align, span = image_span(f, &align), low = km_page_down(lowest_vaddr(f));
    const uint64_t top = KM_GUEST_TOP - KM_STACK_SIZE;

    if (f->eh.e_type == ET_EXEC) {
        if (!km_pages_free(km, low, low + span))
            return km_refuse(why, ELIBBAD, "interpreter %s: overlaps the payload", f->path);
        return 0;
    }
    if (span < top - KM_GUEST_BASE) {
        for (uint64_t base = (top - span) & ~(align - 1); base >= KM_GUEST_BASE; base -= align) {
            if (km_pages_free(km, base, base + span)) {
                f->bias = base - low;
                return 0;
            }
        }
    }
    return km_refuse(why, ENOMEM, "interpreter %s: no room in guest memory", f->path);
}

static int load(struct km *km, struct elf_file *main_elf, struct elf_file *ld,
                struct km_image *img, bool check_only, struct km_refusal *why)
{
    int rc;

    if ((rc = examine(main_elf, "", why)) != 0)
        return rc;
    if (main_elf->interp[0]) {
        ld->path = main_elf->interp;
        if ((rc = examine(ld, "interpreter ", why)) != 0) {
            char inner[sizeof(why->msg)];
            snprintf(inner, sizeof(inner), "%s", why->msg);
            /* A missing loader is ENOENT for execve, as on Linux. */
            return km_refuse(why, why->err == ENOENT || why->err == ENOTDIR ? why->err : ELIBBAD,
                             "%s: %s", main_elf->path, inner);
        }
    }
    if (check_only)
        return 0;

    img->entry = img->start = main_elf->eh.e_entry + main_elf->bias;
    img->phdr = phdr_address(main_elf);
    img->phnum = main_elf->eh.e_phnum;
    img->interp_base = 0;
    if ((rc = load_segments(km, main_elf, "", &img->end, why)) != 0)
        return rc;
    if (main_elf->interp[0]) {
        uint64_t ld_end;
        if ((rc = place_interp(km, ld, why)) != 0 ||
            (rc = load_segments(km, ld, "interpreter ", &ld_end, why)) != 0) {
            char inner[sizeof(why->msg)];
            snprintf(inner, sizeof(inner), "%s", why->msg);
            return km_refuse(why, why->err, "%s: %s", main_elf->path, inner);
        }
        img->interp_base = ld->bias;
        img->start = ld->eh.e_entry + ld->bias;
    }
    return 0;
}

int km_load_elf(struct km *km, const char *path, struct km_image *img, bool check_only,
                struct km_refusal *why)
{
    static struct elf_file main_elf, ld;

    why->script = why->snapshot = false;
    main_elf.path = path;
    main_elf.fd = ld.fd = -1;
    int rc = load(km, &main_elf, &ld, img, check_only, why);
    if (main_elf.fd >= 0)
        close(main_elf.fd);
    if (ld.fd >= 0)
        close(ld.fd);
    return rc;
}
