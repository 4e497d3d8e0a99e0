/* uname: prints the release field of uname(2); under KM it ends in ".kontain.KVM". */
#include "km_rt.h"

int main(int argc, char **argv, char **envp)
{
    struct new_utsname u;
    (void)argc, (void)argv, (void)envp;
    long r = rt_uname(&u);
    if (r < 0) {
        rt_dprintf(2, "uname: %s\n", rt_errname(r));
        return 1;
    }
    rt_printf("%s\n", u.release);
    return 0;
}
