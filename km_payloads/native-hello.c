/* The native baseline for scripts/bench-km: the same line, via static glibc. */
#include <stdio.h>

int main(void)
{
    fputs("Hello from native!\n", stdout);
    return 0;
}
