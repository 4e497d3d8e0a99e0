/* krun-km: a small Kontain-compatible monitor. Shared declarations. */
#ifndef KM_H
#define KM_H

#include <regex.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"

struct kvm_regs;

#define KM_VERSION "krun-km 0.2.0"

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
    const char *coredump;           /* --coredump=FILE; default ./kmcore */
    const char *argv0;              /* --argv0: the payload's argv[0] if not its path */
    bool have_sigmask;
    uint64_t sigmask;               /* --sigmask: the payload's initial signal mask */
    const char *snapshot;           /* --snapshot=FILE: hypercall 505's output; default ./kmsnap */
    const char *mgtpipe;            /* --mgtpipe=PATH: KM listens there for snapshot requests */
    int mgt_fd;                     /* --mgt-fd=N: an inherited listening socket; -1: none */
};

/* What the ELF loader learned, for the initial stack and brk. */
struct km_image {
    uint64_t entry;                 /* the program's entry (AT_ENTRY) */
    uint64_t phdr;                  /* guest address of the program headers */
    uint64_t phnum;
    uint64_t end;                   /* highest address of the program (brk starts here) */
    uint64_t interp_base;           /* AT_BASE: where PT_INTERP's loader is; 0 if none */
    uint64_t start;                 /* first guest RIP: the loader's entry, else entry */
};

/*
 * The payload to start, after shebang resolution: path is the ELF file,
 * argv its argv (argv[0] as the program will see it), execfn the name it
 * was asked for (AT_EXECFN: the script for a shebang file).
 */
struct km_target {
    const char *path;
    char **argv;
    int argc;
    const char *execfn;
};

/*
 * Why a payload cannot run: err is an errno for execve (ENOENT, EACCES,
 * ENOEXEC...), msg the one-line reason ("PATH: ...") KM prints at startup.
 */
struct km_refusal {
    int err;
    bool snapshot;                  /* an ET_CORE file: exit 1, not 126 */
    bool script;                    /* starts with #!: see script.c */
    char msg[4200];
};

/* The kernel's struct sigaction, as the guest passes it to rt_sigaction. */
struct km_sigaction {
    uint64_t handler, flags, restorer, mask;
};

#define KM_NSIG 64

/* Guest signal state (signal.c). Bit n-1 of a mask is signal n. */
struct km_signals {
    struct km_sigaction act[KM_NSIG + 1];
    uint64_t known;                 /* act[n] has been read from KM's host disposition */
    uint64_t mask;                  /* the guest's blocked set, mirrored on KM's own mask */
    uint64_t host_mask;             /* KM's own mask as last set */
    bool mask_known;                /* mask has been read from the host (signal.c) */
    uint64_t suspend_restore;       /* rt_sigsuspend: the mask a handler returns to */
    bool in_suspend;
    uint64_t alt_sp, alt_size;      /* sigaltstack */
    int alt_flags;
    int intr;                       /* the last hypercall got EINTR: INTR_* (signal.c) */
    unsigned intr_nr;
};

/* A guest exception, for delivery to a handler or the death report. */
struct km_fault {
    int signo, code;
    uint64_t addr;                  /* si_addr */
    uint64_t trapno, err, cr2;
    bool resumable;                 /* false: KVM cannot resume this state (no handler) */
    char what[256];                 /* the report, logged if the payload dies of it */
};

struct km {
    struct km_options opt;
    const char *self;               /* KM's own argv[0], for execve */
    int log_fd;                     /* KM's messages (log.c); -1: none */
    bool log_deferred;              /* default log file not opened yet */
    int fd_floor;                   /* KM's private fds live at or above this */
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

    struct km_signals sig;
    bool io_pending;                /* an I/O exit awaits completion by KVM_RUN */

    int exit_code;                  /* valid once km_hcall returned false */
    bool stop;                      /* a hypercall ended the payload (non-live snapshot) */

    uint64_t cpu_digest;            /* FNV-1a of KVM_GET_SUPPORTED_CPUID (snapshot.c) */
    bool have_digest;
    const char *device_path;        /* the virtualization device in use */
    bool file_backed;               /* resumed: some guest pages are MAP_PRIVATE file pages */
    uint64_t snap_dev, snap_ino;    /* resumed: the snapshot file this instance maps */
    int mgt_listen_fd;              /* the management socket; -1: none (mgt.c) */
};

/* Snapshots (snapshot.c, resume.c, mgt.c). */
#define KM_SIG_KICK         33      /* KM-internal: kicks the vCPU thread (libc-reserved) */
#define KM_SNAP_DEFAULT     "./kmsnap"
extern struct km *km_self;          /* the one instance, for the blocking-call wrapper */
extern volatile unsigned km_kicks;  /* KM_SIG_KICK deliveries so far */
extern volatile int km_mgt_pending; /* a management request waits for the vCPU thread */

/* Writes a snapshot into fd (pwrite from 0, then ftruncate). regs: the vCPU's registers to
   record (NULL: the current ones). 0 or -errno, with a one-line reason in err. */
int km_snapshot_write(struct km *km, int fd, const struct kvm_regs *regs, const char *label,
                      const char *desc, uint64_t *size, char *err, size_t errlen);
uint64_t km_cpu_digest(int kvm_fd);
uint64_t km_cpu_digest_cached(struct km *km);   /* vm.c */
struct elf_prstatus;
void km_core_prstatus(struct km *km, const struct kvm_regs *r, struct elf_prstatus *ps);
int64_t km_hc_snapshot(struct km *km, const uint64_t *a);
/* The vCPU thread serves a pending management request; rewind: the vCPU is inside a
   hypercall whose host call was interrupted, record it at its `out` instruction. */
void km_mgt_serve(struct km *km, bool rewind);
int km_mgt_init(struct km *km);
int km_mgt_start(struct km *km);
void km_mgt_cleanup(void);
bool km_mgt_private_fd(int fd);
/* resume.c: 0 (then km_resume_finish once KM's fds are private, then run) or an exit status. */
int km_resume(struct km *km, const char *path);
int km_resume_finish(struct km *km);
void km_discard(struct km *km, uint64_t start, uint64_t len);

/* log.c: KM's own messages; km_err always, km_trace for --verbose. */
void km_err(struct km *km, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void km_trace(struct km *km, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *km_strerror(int err);
int km_log_setup(struct km *km);
void km_log_private(struct km *km);
int km_hide_fd(const struct km *km, int fd);
extern volatile sig_atomic_t km_writing_log;

/* main.c */
bool km_is_private_fd(const struct km *km, int fd);

/* elf.c: 0, or -errno with *why filled in. check_only: validate, load nothing. */
int km_load_elf(struct km *km, const char *path, struct km_image *img, bool check_only,
                struct km_refusal *why);
int km_refuse(struct km_refusal *why, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * script.c: checks (check_only) or loads the target t, following a #! line
 * to its interpreter (t is then updated); 0 or -errno with *why filled in.
 */
int km_load_target(struct km *km, struct km_target *t, struct km_image *img, bool check_only,
                   struct km_refusal *why);

/* stack.c: returns the initial guest %rsp, or 0 after printing why. */
uint64_t km_build_stack(struct km *km, const struct km_image *img, const struct km_target *t,
                        char **envp);

/* exec.c: execve/execveat hypercalls (re-execute KM for the new payload). */
int64_t km_hc_execve(struct km *km, const uint64_t *a);
int64_t km_hc_execveat(struct km *km, const uint64_t *a);

/* signal.c */
extern volatile uint64_t km_sig_held;   /* caught by KM's host handlers, not yet delivered */
int km_signals_init(struct km *km);
int km_signals_kick_init(struct km *km);
void km_signals_deliver(struct km *km);
void km_signal_fault(struct km *km, struct kvm_regs *regs, const struct km_fault *f);
__attribute__((noreturn)) void km_die(struct km *km, int sig, const struct kvm_regs *regs,
                                      const char *report);
uint64_t km_signals_mask(struct km *km);
void km_signals_before_exec(struct km *km);
void km_signals_after_failed_exec(struct km *km);
void km_signals_interrupted(struct km *km, unsigned nr, bool restartable);
void km_signals_look(void);
void km_signals_settle(struct km *km);
/* Blocking host calls for the guest (signal.c): the raw result (-errno on failure). */
long km_blocking_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6);
int64_t km_hc_rt_sigaction(struct km *km, const uint64_t *a);
int64_t km_hc_rt_sigprocmask(struct km *km, const uint64_t *a);
int64_t km_hc_rt_sigreturn(struct km *km, const uint64_t *a);
int64_t km_hc_rt_sigpending(struct km *km, const uint64_t *a);
int64_t km_hc_rt_sigsuspend(struct km *km, const uint64_t *a);
int64_t km_hc_sigaltstack(struct km *km, const uint64_t *a);
int64_t km_hc_kill(struct km *km, const uint64_t *a);
int64_t km_hc_tkill(struct km *km, const uint64_t *a);
int64_t km_hc_tgkill(struct km *km, const uint64_t *a);
#define KM_HC_NORET INT64_MIN       /* handler result: leave hc_ret alone */

static inline bool km_signals_ready(const struct km *km)
{
    return (km_sig_held & ~km->sig.mask) != 0;
}

/* Delivery work for the run loop: ready signals, or an interrupted hypercall. */
static inline bool km_signals_wanted(const struct km *km)
{
    return km_signals_ready(km) || km->sig.intr != 0;
}

/* core.c: writes the core file for a death by sig; appends what happened to note. */
void km_write_core(struct km *km, int sig, const struct kvm_regs *regs, char *note, size_t size);

/* gmem.c */
int km_map_guest_memory(struct km *km);
void *km_gptr(const struct km *km, uint64_t gva, uint64_t len);
const char *km_gstr(const struct km *km, uint64_t gva, int *err);
const char *km_gstrn(const struct km *km, uint64_t gva, size_t max, int toolong, int *err);
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

/* A page (KM_PAGE_SIZE bytes at p) of zeros: core files and snapshots skip those. */
static inline bool km_zero_page(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < KM_PAGE_SIZE / sizeof(*w); i++)
        if (w[i])
            return false;
    return true;
}

/* Guest page pg is reserved (brk, mmap, the program, the stack). */
static inline bool km_page_in_use(const struct km *km, uint64_t pg)
{
    return (km->page_used[pg / 64] >> (pg % 64)) & 1;
}

/* io.c: the whole of len bytes at offset off, or false (errno set). */
bool km_pread_all(int fd, void *buf, size_t len, uint64_t off);
bool km_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/* vm.c */
int km_vm_create(struct km *km, const struct km_image *img, uint64_t rsp);
int km_vm_run(struct km *km);
void km_build_guest_tables(struct km *km);
bool km_back_chunks(struct km *km);
uint64_t km_guest_rip(struct km *km);
void km_vcpu_sync(struct km *km);
bool km_get_regs(struct km *km, struct kvm_regs *r);
bool km_set_regs(struct km *km, const struct kvm_regs *r);
uint64_t km_guest_fs_base(struct km *km);
extern struct kvm_run *volatile km_run_kick;
extern const uint8_t km_guest_code[], km_guest_syscall_done[];   /* immediate_exit target for host handlers */
uint64_t km_priv_code_addr(const void *sym);   /* guest address of a guest.S symbol */

/* hcall.c: handles hypercall nr; false when the guest is done (see exit_code). */
bool km_hcall(struct km *km, unsigned nr);

#endif
