/* warm: an application with a costly start, for the instant-start benchmark. The start
   is a long xorshift walk (compute standing in for loading and warming up an
   application; no division and little memory, which nested hosts make slow in guests);
   then, with argv[1] = "snapshot", a snapshot that does not keep the payload running
   (Kontain's hypercall 505, written where km --snapshot=FILE says). Both the cold run
   and a resumed snapshot print the same "warmed up: HEX" line and exit 0. */
#include "km_rt.h"

#define STEPS 20000UL

static uint64_t warm_up(unsigned long steps)
{
    uint64_t x = 88172645463325252ULL;
    for (unsigned long i = 0; i < steps; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    uint64_t x = warm_up(STEPS);
    if (argc > 1 && rt_strcmp(argv[1], "snapshot") == 0) {
        long rc = rt_snapshot("warm", "warmed up", 0);
        if (rc != 0) {
            rt_printf("warm: snapshot: %s\n", rt_errname(rc));
            return 1;
        }
    }
    rt_printf("warmed up: %lx\n", (unsigned long)x);
    return 0;
}
