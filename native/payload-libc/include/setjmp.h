/*
 * <setjmp.h>: non-local jumps. The buffer holds the callee-saved registers,
 * the stack pointer and the return address. The signal mask is not saved:
 * sigsetjmp/siglongjmp are not provided; after longjmp out of a handler,
 * unblock the signal with sigprocmask.
 */
#ifndef _KRUNC_SETJMP_H
#define _KRUNC_SETJMP_H

#include <bits/krunc.h>

__KRUNC_BEGIN

typedef long jmp_buf[8];

int setjmp(jmp_buf env) __attribute__((__returns_twice__));
int _setjmp(jmp_buf env) __attribute__((__returns_twice__));
__krunc_noreturn void longjmp(jmp_buf env, int val);
__krunc_noreturn void _longjmp(jmp_buf env, int val);

__KRUNC_END

#endif
