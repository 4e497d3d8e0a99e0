/* atexit: the handlers exit() runs, last registered first. */
#include <stdlib.h>

#include "internal.h"

/* atexit handlers: a first block of 32 (POSIX's minimum), then blocks from malloc. */
struct atexit_block {
    struct atexit_block *prev;
    int n;
    void (*fn[32])(void);
};
static struct atexit_block first_block, *handlers = &first_block;

int atexit(void (*fn)(void))
{
    if (handlers->n == 32) {
        struct atexit_block *b = calloc(1, sizeof(*b));
        if (!b)
            return -1;
        b->prev = handlers;
        handlers = b;
    }
    handlers->fn[handlers->n++] = fn;
    return 0;
}

void __krunc_run_atexit(void)
{
    /* A handler may register more; those run too, before the older ones. */
    for (;;) {
        while (handlers->n > 0) {
            void (*fn)(void) = handlers->fn[--handlers->n];
            fn();
        }
        if (!handlers->prev)
            break;
        handlers = handlers->prev;
    }
}
