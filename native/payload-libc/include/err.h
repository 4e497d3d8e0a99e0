/* <err.h>: BSD error reports: "prog: message[: strerror(errno)]" on stderr. */
#ifndef _KRUNC_ERR_H
#define _KRUNC_ERR_H

#include <bits/krunc.h>

__KRUNC_BEGIN

__krunc_noreturn void err(int status, const char *fmt, ...) __krunc_printf(2, 3);
__krunc_noreturn void errx(int status, const char *fmt, ...) __krunc_printf(2, 3);
void warn(const char *fmt, ...) __krunc_printf(1, 2);
void warnx(const char *fmt, ...) __krunc_printf(1, 2);
__krunc_noreturn void verr(int status, const char *fmt, __builtin_va_list ap) __krunc_printf(2, 0);
__krunc_noreturn void verrx(int status, const char *fmt, __builtin_va_list ap) __krunc_printf(2, 0);
void vwarn(const char *fmt, __builtin_va_list ap) __krunc_printf(1, 0);
void vwarnx(const char *fmt, __builtin_va_list ap) __krunc_printf(1, 0);

__KRUNC_END

#endif
