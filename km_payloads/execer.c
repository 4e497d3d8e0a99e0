/*
 * execer [PATH [ARGS...]]: execve(PATH, [PATH, ARGS...], its own
 * environment); PATH defaults to /hello.km. Under KM the new program runs
 * under KM too. Only returns if execve fails: prints the error, exits 1.
 */
#include "km_rt.h"

int main(int argc, char **argv, char **envp)
{
    static char *dflt[] = { "/hello.km", 0 };
    char **args = argc > 1 ? argv + 1 : dflt;

    long r = rt_execve(args[0], args, envp);
    rt_dprintf(2, "execer: execve %s: %s\n", args[0], rt_errname(r));
    return 1;
}
