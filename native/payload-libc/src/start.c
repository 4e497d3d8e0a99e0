/*
 * Process start and end: __libc_start (called by crt1.o's _start), the
 * thread pointer and static TLS, constructors, exit and atexit, abort.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

char **environ;
char *program_invocation_name = "";
char *program_invocation_short_name = "";

/* The linker's default script defines these around each array section. */
extern void (*__preinit_array_start[])(int, char **, char **) __attribute__((visibility("hidden")));
extern void (*__preinit_array_end[])(int, char **, char **) __attribute__((visibility("hidden")));
extern void (*__init_array_start[])(int, char **, char **) __attribute__((visibility("hidden")));
extern void (*__init_array_end[])(int, char **, char **) __attribute__((visibility("hidden")));
extern void (*__fini_array_start[])(void) __attribute__((visibility("hidden")));
extern void (*__fini_array_end[])(void) __attribute__((visibility("hidden")));

/* ---- thread pointer and TLS ----------------------------------------------- */

#define AT_NULL 0
#define AT_PHDR 3
#define AT_PHNUM 5
#define AT_RANDOM 25
#define PT_TLS 7
#define ARCH_SET_FS 0x1002

struct phdr {
    uint32_t p_type, p_flags;
    uint64_t p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align;
};

/*
 * What %fs points at (x86-64 TLS variant II): the TCB, whose first word
 * is its own address; the executable's TLS block ends right below it.
 * gcc's stack protector reads its canary at %fs:0x28.
 */
struct tcb {
    struct tcb *self;
    void *dtv;
    uint64_t reserved[3];
    uint64_t stack_guard;   /* %fs:0x28 */
    uint64_t pointer_guard;
    uint64_t spare[9];
};
_Static_assert(__builtin_offsetof(struct tcb, stack_guard) == 0x28, "canary at %fs:0x28");

static unsigned char tls_area[1024] __attribute__((aligned(64)));

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) & ~(a - 1);
}

static void setup_tls(const uint64_t *auxv)
{
    const struct phdr *ph = 0, *tls = 0;
    uint64_t phnum = 0, canary = 0;

    for (; auxv[0] != AT_NULL; auxv += 2) {
        if (auxv[0] == AT_PHDR)
            ph = (const struct phdr *)auxv[1];
        else if (auxv[0] == AT_PHNUM)
            phnum = auxv[1];
        else if (auxv[0] == AT_RANDOM && auxv[1])
            memcpy(&canary, (const void *)auxv[1], sizeof(canary));
    }
    for (uint64_t i = 0; ph && i < phnum; i++)
        if (ph[i].p_type == PT_TLS)
            tls = &ph[i];

    /*
     * The linker placed each variable at %fs - align_up(p_memsz, p_align) +
     * its offset, so the block's size is rounded to the segment's own
     * alignment; the thread pointer itself is aligned to at least that.
     */
    uint64_t align = 64, size = 0;
    if (tls) {
        uint64_t seg_align = tls->p_align ? tls->p_align : 1;
        if (seg_align > align)
            align = seg_align;
        size = align_up(tls->p_memsz, seg_align);
    }
    uint64_t need = size + sizeof(struct tcb) + align;
    unsigned char *area = tls_area;
    if (need > sizeof(tls_area)) {
        long p = HC6(NR_mmap, 0, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if ((unsigned long)p > -4096UL) {
            static const char msg[] = "krunc: no memory for thread-local storage\n";
            HC3(NR_write, 2, msg, sizeof(msg) - 1);
            __krunc_exit_now(127);
        }
        area = (unsigned char *)p;      /* fresh pages are zero */
    }
    struct tcb *tp = (struct tcb *)align_up((uint64_t)area + size, align);
    if (tls)
        memcpy((unsigned char *)tp - size, (const void *)tls->p_vaddr, tls->p_filesz);
    tp->self = tp;
    /* A zero byte first, as glibc does, so string overflows cannot reproduce it. */
    tp->stack_guard = canary & ~(uint64_t)0xff;
    HC2(NR_arch_prctl, ARCH_SET_FS, tp);
}

/* ---- start ---------------------------------------------------------------- */

__krunc_noreturn void __libc_start(int (*main)(int, char **, char **), uint64_t *sp);

__krunc_noreturn void __libc_start(int (*main)(int, char **, char **), uint64_t *sp)
{
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    char **e = envp;

    while (*e)
        e++;
    environ = envp;
    setup_tls((const uint64_t *)(e + 1));
    if (argc > 0 && argv[0]) {
        char *slash = strrchr(argv[0], '/');
        program_invocation_name = argv[0];
        program_invocation_short_name = slash ? slash + 1 : argv[0];
    }
    for (size_t i = 0; i < (size_t)(__preinit_array_end - __preinit_array_start); i++)
        __preinit_array_start[i](argc, argv, envp);
    for (size_t i = 0; i < (size_t)(__init_array_end - __init_array_start); i++)
        __init_array_start[i](argc, argv, envp);
    exit(main(argc, argv, envp));
}

/* ---- exit ----------------------------------------------------------------- */

__krunc_noreturn void __krunc_exit_now(int status)
{
    for (;;) {
        HC1(NR_exit_group, status);
        __asm__ volatile("ud2");    /* not reached: KM ends the guest */
    }
}

__krunc_noreturn void exit(int status)
{
    if (__krunc_run_atexit)
        __krunc_run_atexit();
    for (size_t i = (size_t)(__fini_array_end - __fini_array_start); i > 0; i--)
        __fini_array_start[i - 1]();
    if (__krunc_stdio_flush_all)
        __krunc_stdio_flush_all();
    __krunc_exit_now(status);
}

__krunc_noreturn void _exit(int status)
{
    __krunc_exit_now(status);
}

__krunc_noreturn void _Exit(int status)
{
    __krunc_exit_now(status);
}

__krunc_noreturn void abort(void)
{
    sigset_t set;

    /* Dies of SIGABRT even past a handler that returns, or a blocked SIGABRT. */
    sigemptyset(&set);
    sigaddset(&set, SIGABRT);
    sigprocmask(SIG_UNBLOCK, &set, 0);
    raise(SIGABRT);
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
    __krunc_exit_now(127);
}

/* ---- failure reports ------------------------------------------------------ */

static void say(const char *s)
{
    HC3(NR_write, 2, s, strlen(s));
}

__krunc_noreturn void __assert_fail(const char *expr, const char *file, unsigned int line,
                                    const char *func);
__krunc_noreturn void __assert_fail(const char *expr, const char *file, unsigned int line,
                                    const char *func)
{
    char num[16];
    int i = (int)sizeof(num) - 1;

    num[i] = '\0';
    do {
        num[--i] = (char)('0' + line % 10);
        line /= 10;
    } while (line && i > 0);
    if (__krunc_stdio_flush_all)
        __krunc_stdio_flush_all();
    /* "prog: file:line: func: Assertion `expr' failed.", glibc's wording. */
    say(program_invocation_name);
    say(": ");
    say(file);
    say(":");
    say(num + i);
    say(": ");
    say(func);
    say(": Assertion `");
    say(expr);
    say("' failed.\n");
    abort();
}

__krunc_noreturn void __stack_chk_fail(void);
__krunc_noreturn void __stack_chk_fail(void)
{
    say("*** stack smashing detected ***: terminated\n");
    abort();
}
