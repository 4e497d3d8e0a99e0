/*
 * <assert.h>: no include guard, on purpose: the C standard has assert
 * follow NDEBUG at each inclusion.
 */
#include <bits/krunc.h>

#undef assert
#ifdef NDEBUG
#define assert(e) ((void)0)
#else
__KRUNC_BEGIN
__krunc_noreturn void __assert_fail(const char *expr, const char *file, unsigned int line,
                                    const char *func);
__KRUNC_END
#define assert(e) ((e) ? (void)0 : __assert_fail(#e, __FILE__, __LINE__, __func__))
#endif

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__cplusplus) && \
    !defined(static_assert)
#define static_assert _Static_assert
#endif
