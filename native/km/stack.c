/*
 * The payload's initial stack: the System V x86-64 process start layout
 * (argc, argv[], NULL, envp[], NULL, auxv pairs, AT_NULL; strings above)
 * at the top of guest memory, so a libc _start works unchanged.
 */
#include <elf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "km.h"

#define ARGS_MAX (KM_STACK_SIZE / 2)    /* like Linux: args may use part of the stack */

struct stack_writer {
    struct km *km;
    uint64_t sp;
    uint64_t floor;
};

/* Copies bytes below sp; returns the guest address, or 0 if out of room. */
static uint64_t push_bytes(struct stack_writer *w, const void *data, size_t len)
{
    if (w->sp - w->floor < len)
        return 0;
    w->sp -= len;
    memcpy(w->km->mem + w->sp, data, len);
    return w->sp;
}

static bool push_strings(struct stack_writer *w, char *const *strs, int n, uint64_t *addrs)
{
    for (int i = n - 1; i >= 0; i--)
        if ((addrs[i] = push_bytes(w, strs[i], strlen(strs[i]) + 1)) == 0)
            return false;
    return true;
}

static void put_word(struct km *km, uint64_t *at, uint64_t value)
{
    memcpy(km->mem + *at, &value, sizeof(value));
    *at += sizeof(value);
}

uint64_t km_build_stack(struct km *km, const struct km_image *img, const struct km_target *t,
                        char **envp)
{
    const uint64_t bottom = KM_GUEST_TOP - KM_STACK_SIZE;
    struct stack_writer w = { km, KM_GUEST_TOP, KM_GUEST_TOP - ARGS_MAX };
    int argc = t->argc, envc = 0;
    uint8_t random_bytes[16];

    while (envp[envc])
        envc++;
    uint64_t *addrs = calloc((size_t)argc + (size_t)envc + 1, sizeof(uint64_t));
    /* As Linux: the file name asked for (AT_EXECFN) at the very top, then env, then args. */
    uint64_t execfn = push_bytes(&w, t->execfn, strlen(t->execfn) + 1);
    if (!addrs || !execfn || !push_strings(&w, envp, envc, addrs + argc) ||
        !push_strings(&w, t->argv, argc, addrs)) {
        km_err(km, "%s: argument list too long", t->execfn);
        free(addrs);
        return 0;
    }
    if (getrandom(random_bytes, sizeof(random_bytes), 0) != sizeof(random_bytes))
        memset(random_bytes, 0x5a, sizeof(random_bytes));
    uint64_t at_random = push_bytes(&w, random_bytes, sizeof(random_bytes));

    const uint64_t auxv[][2] = {
        { AT_PHDR, img->phdr },     { AT_PHENT, sizeof(Elf64_Phdr) },
        { AT_PHNUM, img->phnum },   { AT_PAGESZ, KM_PAGE_SIZE },
        { AT_BASE, img->interp_base }, { AT_FLAGS, 0 },
        { AT_ENTRY, img->entry },   { AT_UID, getuid() },
        { AT_EUID, geteuid() },     { AT_GID, getgid() },
        { AT_EGID, getegid() },     { AT_SECURE, 0 },
        { AT_CLKTCK, 100 },         { AT_RANDOM, at_random },
        { AT_EXECFN, execfn },      { AT_NULL, 0 },
    };
    size_t nauxv = sizeof(auxv) / sizeof(auxv[0]);
    uint64_t words = 1 + (uint64_t)argc + 1 + (uint64_t)envc + 1 + 2 * nauxv;
    if (at_random == 0 || w.sp - w.floor < words * 8 + 16) {
        km_err(km, "%s: argument list too long", t->execfn);
        free(addrs);
        return 0;
    }
    /* The ABI wants %rsp 16-byte aligned at _start, pointing at argc. */
    uint64_t sp = (w.sp - words * 8) & ~(uint64_t)15;
    uint64_t at = sp;
    put_word(km, &at, (uint64_t)argc);
    for (int i = 0; i < argc; i++)
        put_word(km, &at, addrs[i]);
    put_word(km, &at, 0);
    for (int i = 0; i < envc; i++)
        put_word(km, &at, addrs[argc + i]);
    put_word(km, &at, 0);
    for (size_t i = 0; i < nauxv; i++) {
        put_word(km, &at, auxv[i][0]);
        put_word(km, &at, auxv[i][1]);
    }
    free(addrs);
    km_pages_reserve(km, bottom, KM_GUEST_TOP);
    return sp;
}
