/* exit N: exits with status N (0 without an argument). */
#include "km_rt.h"

int main(int argc, char **argv, char **envp)
{
    long code = 0;
    (void)envp;
    if (argc > 1 && rt_parse_long(argv[1], &code) != 0) {
        rt_dprintf(2, "exit: not a number: %s\n", argv[1]);
        return 2;
    }
    rt_exit((int)code);
}
