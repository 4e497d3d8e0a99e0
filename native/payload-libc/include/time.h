/*
 * <time.h>: clocks, sleeping, and calendar time. There is no time zone
 * database: local time is UTC. difftime is not provided (it returns a
 * double).
 */
#ifndef _KRUNC_TIME_H
#define _KRUNC_TIME_H

#include <bits/krunc.h>

__KRUNC_BEGIN

#define CLOCKS_PER_SEC ((clock_t)1000000)
#define TIME_UTC 1

#define CLOCK_REALTIME 0
#define CLOCK_MONOTONIC 1
#define CLOCK_PROCESS_CPUTIME_ID 2
#define CLOCK_THREAD_CPUTIME_ID 3
#define CLOCK_MONOTONIC_RAW 4
#define CLOCK_REALTIME_COARSE 5
#define CLOCK_MONOTONIC_COARSE 6
#define CLOCK_BOOTTIME 7
#define TIMER_ABSTIME 1

struct tm {
    int tm_sec, tm_min, tm_hour, tm_mday, tm_mon, tm_year, tm_wday, tm_yday, tm_isdst;
    long tm_gmtoff;
    const char *tm_zone;
};

time_t time(time_t *t);
clock_t clock(void);
int clock_gettime(clockid_t clk, struct timespec *ts);
int clock_getres(clockid_t clk, struct timespec *ts);
int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req, struct timespec *rem);
int nanosleep(const struct timespec *req, struct timespec *rem);
int timespec_get(struct timespec *ts, int base);

struct tm *gmtime(const time_t *t);
struct tm *gmtime_r(const time_t *__krunc_restrict t, struct tm *__krunc_restrict tm);
struct tm *localtime(const time_t *t);
struct tm *localtime_r(const time_t *__krunc_restrict t, struct tm *__krunc_restrict tm);
time_t mktime(struct tm *tm);
time_t timegm(struct tm *tm);
size_t strftime(char *__krunc_restrict s, size_t max, const char *__krunc_restrict fmt,
                const struct tm *__krunc_restrict tm);
char *asctime(const struct tm *tm);
char *asctime_r(const struct tm *__krunc_restrict tm, char *__krunc_restrict buf);
char *ctime(const time_t *t);
char *ctime_r(const time_t *t, char *buf);
void tzset(void);
extern char *tzname[2];
extern long timezone;
extern int daylight;

__KRUNC_END

#endif
