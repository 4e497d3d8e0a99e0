/*
 * <kontain.h> and the raw side: the payload knows it runs under KM, raw
 * hypercalls and syscall() agree with the wrappers, and the snapshot call
 * (live: this instance goes on) returns 0 here and in an instance resumed from it.
 */
#include <errno.h>
#include <kontain.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "check.h"

int main(void)
{
    struct utsname u;
    CHECK(uname(&u) == 0);
    printf("release=%s\n", u.release);
    printf("kontain=%d\n", km_is_kontain());
    CHECK(km_hypercall(39, 0, 0, 0, 0, 0, 0) == getpid());    /* 39: getpid */
    CHECK(syscall(39) == getpid());
    CHECK(syscall(600) == -1 && errno == ENOSYS);
    static const char msg[] = "raw write\n";
    km_hc_args_t args = { 0, 1, (uint64_t)msg, sizeof(msg) - 1, 0, 0, 0 };
    fflush(stdout);
    CHECK(km_hcall(1, &args) == (long)sizeof(msg) - 1);
    CHECK(km_hypercall(400, 0, 0, 0, 0, 0, 0) == -ENOTSUP);   /* not a call KM knows */
    printf("snapshot=%ld\n", km_snapshot("label", "krunc test", 1));
    char host[128];
    CHECK(gethostname(host, sizeof(host)) == 0 && strcmp(host, u.nodename) == 0);
    CHECK(sysconf(_SC_PAGESIZE) == 4096 && getpagesize() == 4096);
    return checks_done();
}
