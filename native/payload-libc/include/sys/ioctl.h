/* <sys/ioctl.h>: KM answers TIOCGWINSZ on fds 0-2 and ENOTTY to everything else. */
#ifndef _KRUNC_SYS_IOCTL_H
#define _KRUNC_SYS_IOCTL_H

#include <bits/krunc.h>

__KRUNC_BEGIN

struct winsize {
    unsigned short ws_row, ws_col, ws_xpixel, ws_ypixel;
};
#define TIOCGWINSZ 0x5413

int ioctl(int fd, unsigned long request, ...);

__KRUNC_END

#endif
