/* krun-km: a small Kontain-compatible monitor. Shared declarations. */
#ifndef KM_H
#define KM_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"

#define KM_VERSION "krun-km 0.1.0"

/* Exit codes for failures before the payload runs (shell conventions). */
#define KM_EXIT_SETUP       1       /* KVM or host resource problem */
#define KM_EXIT_USAGE       2
#define KM_EXIT_NOEXEC      126     /* payload unreadable or not a valid .km */
#define KM_EXIT_NOTFOUND    127
#define KM_EXIT_ABORT       134     /* 128 + SIGABRT: unrecoverable guest state */

#define KM_GUEST_PAGES      (KM_GUEST_TOP / KM_PAGE_SIZE)
#define KM_CHUNKS           (KM_GUEST_TOP / KM_CHUNK_SIZE)

_Static_assert(KM_CHUNKS <= 64 && KM_GUEST_TOP % KM_CHUNK_SIZE == 0,
               "chunk bitmaps are one 64-bit word");

struct km_options {
    const char *payload;
    char **payload_argv;            /* argv[0] is the payload path as given */
    int payload_argc;
    bool verbose;
    const char *verbose_filter;     /* --verbose=REGEX: log matching hypercalls */
    const char *log_path;
    const char *device;             /* NULL: probe the default list */
    char **putenv;
    int nputenv;
    bool copyenv;
};

/* What the ELF loader learned, for the initial stack and brk. */
struct km_image {
    uint64_t entry;
    uint64_t phdr;                  /* guest address of the program headers */
    uint64_t phnum;
    uint64_t end;                   /* highest loaded address */
};

struct km {
    struct km_options opt;
    int err_fd;                     /* KM's own stderr, safe from the guest */
    int log_fd;                     /* hypercall trace (stderr or -k file) */
    bool trace;
    regex_t trace_filter;
    bool have_filter;

    uint8_t *mem;                   /* host address of guest-physical 0 */
    uint64_t chunks_wanted;         /* bit n: KM_CHUNK_SIZE chunk n holds reserved pages */
    uint64_t chunks_backed;         /* bit n: chunk n is a KVM memory slot */
    int vm_fd;
    int vcpu_fd;
    struct kvm_run *run;
    const char *uname_suffix;

    uint64_t brk_start, brk;
    uint64_t page_used[KM_GUEST_PAGES / 64];

    int exit_code;                  /* valid once km_hcall returned false */
};

/* main.c */
void km_err(struct km *km, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void km_trace(struct km *km, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *km_strerror(int err);
bool km_is_private_fd(const struct km *km, int fd);

/* elf.c: returns 0, or an exit code after printing why. */
int km_load_elf(struct km *km, const char *path, struct km_image *img);

/* stack.c: returns the initial guest %rsp, or 0 after printing why. */
uint64_t km_build_stack(struct km *km, const struct km_image *img, char **envp);

/* gmem.c */
int km_map_guest_memory(struct km *km);
void *km_gptr(const struct km *km, uint64_t gva, uint64_t len);
const char *km_gstr(const struct km *km, uint64_t gva, int *err);
void *km_priv_ptr(const struct km *km, uint64_t gva, uint64_t len);
bool km_range_ok(uint64_t gva, uint64_t len);
bool km_pages_reserve(struct km *km, uint64_t start, uint64_t end);
void km_pages_release(struct km *km, uint64_t start, uint64_t end);
bool km_pages_free(const struct km *km, uint64_t start, uint64_t end);
uint64_t km_pages_find(const struct km *km, uint64_t len, uint64_t below);

static inline uint64_t km_page_up(uint64_t x)
{
    return (x + KM_PAGE_SIZE - 1) & ~(uint64_t)(KM_PAGE_SIZE - 1);
}

static inline uint64_t km_page_down(uint64_t x)
{
    return x & ~(uint64_t)(KM_PAGE_SIZE - 1);
}

/* vm.c */
int km_vm_create(struct km *km, const struct km_image *img, uint64_t rsp);
int km_vm_run(struct km *km);
void km_build_guest_tables(struct km *km);
bool km_back_chunks(struct km *km);
uint64_t km_guest_rip(struct km *km);

/* hcall.c: handles hypercall nr; false when the guest is done (see exit_code). */
bool km_hcall(struct km *km, unsigned nr);

#endif
