/* <sys/utsname.h>: system names. Under KM, release ends in ".kontain.KVM" (or .KKM). */
#ifndef _KRUNC_SYS_UTSNAME_H
#define _KRUNC_SYS_UTSNAME_H

#include <bits/krunc.h>

__KRUNC_BEGIN

struct utsname {
    char sysname[65];
    char nodename[65];
    char release[65];
    char version[65];
    char machine[65];
    char domainname[65];
};

int uname(struct utsname *u);

__KRUNC_END

#endif
