/*
 * args: prints its arguments and environment, one per line:
 *   argv[0]=<path as given to km>
 *   argv[1]=...
 *   env=KEY=VALUE        (each environment entry, in order)
 */
#include "km_rt.h"

int main(int argc, char **argv, char **envp)
{
    for (int i = 0; i < argc; i++)
        rt_printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = envp; *e; e++)
        rt_printf("env=%s\n", *e);
    return 0;
}
