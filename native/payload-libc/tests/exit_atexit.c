/*
 * How a payload ends. argv[1] picks:
 *   return N   main returns N after registering three atexit handlers
 *   exit N     exit(N) from a nested call; a handler registers another
 *   _exit N    buffered output is lost: _exit does not flush
 *   abort      abort(): dies of SIGABRT
 *   assert     a failed assert: the message, then SIGABRT
 * Output is printed with stdio and never flushed by hand, so whatever
 * reaches the pipe was flushed at exit.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void h1(void) { printf("atexit 1\n"); }
static void h2(void) { printf("atexit 2\n"); }
static void late(void) { printf("registered during exit\n"); }
static void h3(void)
{
    printf("atexit 3\n");
    atexit(late);
}

__attribute__((constructor)) static void ctor(void) { printf("constructor\n"); }
__attribute__((destructor)) static void dtor(void) { printf("destructor\n"); }

static void deep(int n, int code)
{
    if (n == 0)
        exit(code);
    deep(n - 1, code);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int code = argc > 2 ? atoi(argv[2]) : 0;
    atexit(h1);
    atexit(h2);
    atexit(h3);
    printf("main %s", argv[1]);     /* no newline: only exit's flush sends it */
    if (strcmp(argv[1], "exit") == 0)
        deep(10, code);
    if (strcmp(argv[1], "_exit") == 0)
        _exit(code);
    if (strcmp(argv[1], "abort") == 0)
        abort();
    if (strcmp(argv[1], "assert") == 0)
        assert(argc == 42);
    printf("\n");
    return code;
}
