/* The Kontain-specific calls of <kontain.h>. */
#include <kontain.h>
#include <string.h>
#include <sys/utsname.h>

#include "internal.h"

long km_hypercall(unsigned int nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                  uint64_t a5, uint64_t a6)
{
    if (nr >= KM_HC_MAX)
        return -ENOSYS;
    return __hc(nr, (long)a1, (long)a2, (long)a3, (long)a4, (long)a5, (long)a6);
}

long km_snapshot(const char *label, const char *description, int live)
{
    return HC3(KM_HC_SNAPSHOT, label, description, live);
}

int km_is_kontain(void)
{
    struct utsname u;
    return uname(&u) == 0 && strstr(u.release, ".kontain.") != 0;
}
