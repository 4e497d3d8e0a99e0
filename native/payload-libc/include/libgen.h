/* <libgen.h>: path components (POSIX forms: they may modify their argument). */
#ifndef _KRUNC_LIBGEN_H
#define _KRUNC_LIBGEN_H

#include <bits/krunc.h>

__KRUNC_BEGIN

char *basename(char *path);
char *dirname(char *path);

__KRUNC_END

#endif
