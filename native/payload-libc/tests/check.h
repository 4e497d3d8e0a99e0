/*
 * A tiny self-check helper for the payload-libc test programs: CHECK
 * prints a FAIL line (the test looks for them) and counts it; main ends
 * with `return checks_done();`, which prints the tally and makes the exit
 * status say whether all passed.
 */
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>

static int check_failures, check_count;

#define CHECK(cond) do { \
        check_count++; \
        if (!(cond)) { \
            check_failures++; \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        } \
    } while (0)

static inline int checks_done(void)
{
    printf("checks: %d run, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
