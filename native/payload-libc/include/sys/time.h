/* <sys/time.h>: microsecond time and interval timers. */
#ifndef _KRUNC_SYS_TIME_H
#define _KRUNC_SYS_TIME_H

#include <bits/krunc.h>

__KRUNC_BEGIN

#ifndef _KRUNC_TIMEVAL_DEFINED
#define _KRUNC_TIMEVAL_DEFINED
struct timeval {
    time_t tv_sec;
    suseconds_t tv_usec;
};
#endif

struct timezone {
    int tz_minuteswest, tz_dsttime;
};

struct itimerval {
    struct timeval it_interval, it_value;
};

#define ITIMER_REAL 0
#define ITIMER_VIRTUAL 1
#define ITIMER_PROF 2

int gettimeofday(struct timeval *__krunc_restrict tv, void *__krunc_restrict tz);
int setitimer(int which, const struct itimerval *__krunc_restrict nv,
              struct itimerval *__krunc_restrict old);
int getitimer(int which, struct itimerval *cur);

#define timerisset(t) ((t)->tv_sec || (t)->tv_usec)
#define timerclear(t) ((t)->tv_sec = (t)->tv_usec = 0)
#define timercmp(a, b, op) \
    ((a)->tv_sec == (b)->tv_sec ? (a)->tv_usec op (b)->tv_usec : (a)->tv_sec op (b)->tv_sec)
#define timeradd(a, b, r) do { \
        (r)->tv_sec = (a)->tv_sec + (b)->tv_sec; \
        (r)->tv_usec = (a)->tv_usec + (b)->tv_usec; \
        if ((r)->tv_usec >= 1000000) { (r)->tv_sec++; (r)->tv_usec -= 1000000; } \
    } while (0)
#define timersub(a, b, r) do { \
        (r)->tv_sec = (a)->tv_sec - (b)->tv_sec; \
        (r)->tv_usec = (a)->tv_usec - (b)->tv_usec; \
        if ((r)->tv_usec < 0) { (r)->tv_sec--; (r)->tv_usec += 1000000; } \
    } while (0)

__KRUNC_END

#endif
