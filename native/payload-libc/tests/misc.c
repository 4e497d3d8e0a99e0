/*
 * The smaller headers and the thread pointer: locale, err.h, realpath
 * (argv[2..] resolved, printed for the test to compare with the host's),
 * sched_yield, alloca, _Thread_local (aligned, and bigger than the static
 * area). Modes (argv[1]):
 *   run DIR PATH...   the checks, then "realpath PATH=RESULT" lines
 *   smash TEXT        copies TEXT into an 8-byte buffer: with
 *                     -fstack-protector-all the canary at %fs:0x28 catches it
 */
#include <alloca.h>
#include <err.h>
#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static _Thread_local int tls_counter = 40;
static _Thread_local char tls_zero[64];
static _Thread_local char tls_aligned[10] __attribute__((aligned(256))) = "aligned";
static _Thread_local char tls_big[4096] = { 1 };   /* past the static TLS area: mmap */

__attribute__((noinline)) static void smash(const char *text)
{
    char buf[8];
    strcpy(buf, text);
    printf("copied %zu bytes\n", strlen(buf));
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "smash") == 0) {
        smash(argv[2]);
        return 0;
    }
    if (argc < 3 || strcmp(argv[1], "run") != 0)
        return 2;

    CHECK(strcmp(setlocale(LC_ALL, ""), "C") == 0 && strcmp(setlocale(LC_CTYPE, NULL), "C") == 0);
    CHECK(setlocale(LC_ALL, "fr_FR.UTF-8") == NULL);
    CHECK(strcmp(localeconv()->decimal_point, ".") == 0 && localeconv()->frac_digits == CHAR_MAX);

    tls_counter += 2;
    CHECK(tls_counter == 42 && tls_zero[0] == 0 && tls_zero[63] == 0);
    CHECK(((uintptr_t)tls_aligned & 255) == 0 && strcmp(tls_aligned, "aligned") == 0);
    CHECK(tls_big[0] == 1 && tls_big[4095] == 0);
    uintptr_t tp;
    __asm__("movq %%fs:0, %0" : "=r"(tp));     /* the TCB points at itself */
    CHECK(tp && tp > (uintptr_t)&tls_counter);
    CHECK(sched_yield() == 0);
    char *stack = alloca(100);
    memset(stack, 'a', 100);
    CHECK(stack[99] == 'a');

    errno = ENOENT;
    warn("warn %d", 1);
    warnx("warnx %s", "two");

    CHECK(chdir(argv[2]) == 0);
    char here[PATH_MAX], buf[PATH_MAX];
    CHECK(getcwd(here, sizeof(here)) && realpath(".", buf) && strcmp(here, buf) == 0);
    for (int i = 3; i < argc; i++) {
        errno = 0;
        char *r = realpath(argv[i], NULL);
        printf("realpath %s=%s\n", argv[i], r ? r : strerror(errno));
        free(r);
    }
    return checks_done();
}
