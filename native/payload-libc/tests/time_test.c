/*
 * Clocks and sleeping: the monotonic clock only moves forward, sleeps last
 * at least what they ask, realtime agrees with the host (printed for the
 * test). Then calendar conversions: for each "SECONDS" argument, one line
 * "SECONDS: <strftime of a fixed format>" for the test to compare with
 * Python's, and timegm must give the seconds back.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static long long ns(const struct timespec *t)
{
    return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static long long mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return ns(&t);
}

int main(int argc, char **argv)
{
    struct timespec a, b, res;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &a) == 0);
    int forward = 1;
    for (int i = 0; i < 1000; i++) {
        CHECK(clock_gettime(CLOCK_MONOTONIC, &b) == 0);
        forward &= ns(&b) >= ns(&a);
        a = b;
    }
    CHECK(forward);
    CHECK(clock_getres(CLOCK_MONOTONIC, &res) == 0 && res.tv_sec == 0 && res.tv_nsec > 0);
    CHECK(clock_gettime(12345, &a) == -1 && errno == EINVAL);

    long long t0 = mono_ns();
    struct timespec req = { 0, 50 * 1000 * 1000 }, rem = { 9, 9 };
    CHECK(nanosleep(&req, &rem) == 0);
    long long slept = mono_ns() - t0;
    CHECK(slept >= 50000000LL);
    printf("nanosleep_ms=%lld\n", slept / 1000000);
    t0 = mono_ns();
    CHECK(usleep(20000) == 0);
    CHECK(mono_ns() - t0 >= 20000000LL);
    t0 = mono_ns();
    CHECK(sleep(0) == 0);
    struct timespec abs_req;
    clock_gettime(CLOCK_MONOTONIC, &abs_req);
    abs_req.tv_nsec += 10 * 1000 * 1000;
    if (abs_req.tv_nsec >= 1000000000L) {
        abs_req.tv_sec++;
        abs_req.tv_nsec -= 1000000000L;
    }
    CHECK(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs_req, NULL) == 0);
    CHECK(mono_ns() >= ns(&abs_req));
    req.tv_nsec = 2000000000L;  /* out of range */
    CHECK(nanosleep(&req, NULL) == -1 && errno == EINVAL);

    struct timeval tv;
    time_t now = time(NULL), also;
    CHECK(gettimeofday(&tv, NULL) == 0 && tv.tv_usec >= 0 && tv.tv_usec < 1000000);
    CHECK(tv.tv_sec - now <= 1 && time(&also) >= now && also >= now);
    printf("time=%ld\n", (long)now);
    CHECK(clock() >= 0);

    /* Calendar. */
    for (int i = 1; i < argc; i++) {
        time_t t = (time_t)strtoll(argv[i], NULL, 10);
        struct tm tm;
        char out[200];
        CHECK(gmtime_r(&t, &tm) != NULL);
        strftime(out, sizeof(out), "%Y-%m-%d %H:%M:%S %a %A %b %B %j %w %u %U %W %V %G %y %C %e %I %p %D %F %T %R %%", &tm);
        printf("%s: %s\n", argv[i], out);
        struct tm copy = tm;
        CHECK(timegm(&copy) == t);
    }
    struct tm tm = { .tm_year = 124, .tm_mon = 0, .tm_mday = 32, .tm_hour = 25, .tm_min = 61 };
    time_t t = mktime(&tm);     /* 2024-01-32 25:61 is 2024-02-02 02:01 */
    CHECK(tm.tm_mon == 1 && tm.tm_mday == 2 && tm.tm_hour == 2 && tm.tm_min == 1 &&
          tm.tm_wday == 5 && tm.tm_yday == 32);
    CHECK(t == 1706839260);
    char small[5];
    CHECK(strftime(small, sizeof(small), "%Y-%m", &tm) == 0);
    CHECK(strftime(small, sizeof(small), "%Y", &tm) == 4 && strcmp(small, "2024") == 0);
    time_t epoch = 0;
    printf("asctime: %s", asctime(gmtime(&epoch)));
    printf("ctime: %s", ctime(&epoch));
    return checks_done();
}
