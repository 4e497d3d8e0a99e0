/* hello: prints one line and exits 0. */
#include "km_rt.h"

int main(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    static const char msg[] = "Hello from Kontain!\n";
    return rt_write(1, msg, sizeof(msg) - 1) == sizeof(msg) - 1 ? 0 : 1;
}
