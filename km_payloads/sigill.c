/* sigill: executes ud2; the payload (and KM with it) dies of SIGILL. */
#include "km_rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    __asm__ volatile("ud2");
    rt_printf("sigill: survived ud2\n");
    return 1;
}
