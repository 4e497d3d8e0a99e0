/*
 * Calendar time, in the proleptic Gregorian calendar. There is no time
 * zone database in a payload, so local time is UTC.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

char *tzname[2] = { "UTC", "UTC" };
long timezone;
int daylight;

void tzset(void)
{
}

static const char *const day_names[7] = {
    "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
};
static const char *const month_names[12] = {
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
};
static const int month_days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Leap years in [1, y] (negative y counts backwards, consistently). */
static int64_t leaps_through(int64_t y)
{
    return floor_div(y, 4) - floor_div(y, 100) + floor_div(y, 400);
}

/* Days from 1970-01-01 to January 1st of year y. */
static int64_t days_before_year(int64_t y)
{
    return 365 * (y - 1970) + leaps_through(y - 1) - leaps_through(1969);
}

/* Seconds since the epoch to broken-down UTC; NULL (EOVERFLOW) past int years. */
struct tm *gmtime_r(const time_t *__krunc_restrict t, struct tm *__krunc_restrict tm)
{
    int64_t days = floor_div(*t, 86400), secs = *t - days * 86400;
    int64_t y = 1970;

    /* Any 400 consecutive years hold 146097 days; then at most 400 single steps. */
    int64_t cycles = floor_div(days, 146097);
    days -= cycles * 146097;
    y += 400 * cycles;
    while (days >= 365 + is_leap(y)) {
        days -= 365 + is_leap(y);
        y++;
    }
    if (y - 1900 > INT_MAX || y - 1900 < INT_MIN) {
        errno = EOVERFLOW;
        return 0;
    }
    tm->tm_yday = (int)days;
    int m = 0;
    for (; m < 11; m++) {
        int len = month_days[m] + (m == 1 && is_leap(y));
        if (days < len)
            break;
        days -= len;
    }
    tm->tm_year = (int)(y - 1900);
    tm->tm_mon = m;
    tm->tm_mday = (int)days + 1;
    tm->tm_hour = (int)(secs / 3600);
    tm->tm_min = (int)(secs / 60 % 60);
    tm->tm_sec = (int)(secs % 60);
    /* 1970-01-01 was a Thursday. */
    tm->tm_wday = (int)(((floor_div(*t, 86400) % 7) + 7 + 4) % 7);
    tm->tm_isdst = 0;
    tm->tm_gmtoff = 0;
    tm->tm_zone = "GMT";
    return tm;
}

struct tm *gmtime(const time_t *t)
{
    static struct tm tm;
    return gmtime_r(t, &tm);
}

struct tm *localtime_r(const time_t *__krunc_restrict t, struct tm *__krunc_restrict tm)
{
    if (!gmtime_r(t, tm))
        return 0;
    tm->tm_zone = "UTC";
    return tm;
}

struct tm *localtime(const time_t *t)
{
    static struct tm tm;
    return localtime_r(t, &tm);
}

/* Broken-down UTC to seconds; fields out of range carry over, and tm is normalized. */
time_t timegm(struct tm *tm)
{
    int64_t y = (int64_t)tm->tm_year + 1900, m = tm->tm_mon;
    y += floor_div(m, 12);
    m -= floor_div(m, 12) * 12;
    int64_t days = days_before_year(y) + tm->tm_mday - 1;
    for (int i = 0; i < m; i++)
        days += month_days[i] + (i == 1 && is_leap(y));
    time_t t = (time_t)(days * 86400 + (int64_t)tm->tm_hour * 3600 + (int64_t)tm->tm_min * 60 +
                        tm->tm_sec);
    const char *zone = tm->tm_zone;
    if (!gmtime_r(&t, tm))
        return (time_t)-1;
    tm->tm_zone = zone ? zone : "UTC";
    return t;
}

time_t mktime(struct tm *tm)
{
    tm->tm_zone = "UTC";
    return timegm(tm);
}

/* ---- strftime ------------------------------------------------------------- */

struct out {
    char *p;
    size_t room;    /* bytes left, the NUL included */
    int full;
};

static void put_str(struct out *o, const char *s)
{
    for (; *s; s++) {
        if (o->room <= 1) {
            o->full = 1;
            return;
        }
        *o->p++ = *s;
        o->room--;
    }
}

static void put_num(struct out *o, long v, int width, char padc)
{
    char buf[24];
    if (padc)
        snprintf(buf, sizeof(buf), padc == '0' ? "%0*ld" : "%*ld", width, v);
    else
        snprintf(buf, sizeof(buf), "%ld", v);
    put_str(o, buf);
}

/* ISO 8601 week number and its year: weeks start on Monday, week 1 holds a Thursday. */
static int iso_weeks_in(int64_t y)
{
    /* 53 weeks when January 1st is a Thursday, or a Wednesday in a leap year. */
    int64_t jan1 = ((days_before_year(y) % 7) + 7 + 4) % 7;
    return jan1 == 4 || (jan1 == 3 && is_leap(y)) ? 53 : 52;
}

static int iso_week(const struct tm *tm, int64_t *year)
{
    int64_t y = (int64_t)tm->tm_year + 1900;
    int wday = (tm->tm_wday + 6) % 7 + 1;   /* Monday 1 .. Sunday 7 */
    int week = (tm->tm_yday + 1 - wday + 10) / 7;   /* with the 1-based day of the year */
    if (week < 1) {
        y--;
        week = iso_weeks_in(y);
    } else if (week > iso_weeks_in(y)) {
        y++;
        week = 1;
    }
    *year = y;
    return week;
}

static void format(struct out *o, const char *fmt, const struct tm *tm)
{
    for (; *fmt && !o->full; fmt++) {
        if (*fmt != '%') {
            char one[2] = { *fmt, 0 };
            put_str(o, one);
            continue;
        }
        fmt++;
        if (*fmt == 'E' || *fmt == 'O')     /* alternative forms: the "C" locale has none */
            fmt++;
        int64_t iy;
        int hour12 = tm->tm_hour % 12 ? tm->tm_hour % 12 : 12;
        switch (*fmt) {
        case 'a':
            if ((unsigned)tm->tm_wday < 7) {
                char ab[4] = { 0 };
                memcpy(ab, day_names[tm->tm_wday], 3);
                put_str(o, ab);
            } else {
                put_str(o, "?");
            }
            break;
        case 'A': put_str(o, (unsigned)tm->tm_wday < 7 ? day_names[tm->tm_wday] : "?"); break;
        case 'b':
        case 'h':
            if ((unsigned)tm->tm_mon < 12) {
                char ab[4] = { 0 };
                memcpy(ab, month_names[tm->tm_mon], 3);
                put_str(o, ab);
            } else {
                put_str(o, "?");
            }
            break;
        case 'B': put_str(o, (unsigned)tm->tm_mon < 12 ? month_names[tm->tm_mon] : "?"); break;
        case 'c': format(o, "%a %b %e %H:%M:%S %Y", tm); break;
        case 'C': put_num(o, (tm->tm_year + 1900L) / 100, 2, '0'); break;
        case 'd': put_num(o, tm->tm_mday, 2, '0'); break;
        case 'D': format(o, "%m/%d/%y", tm); break;
        case 'e': put_num(o, tm->tm_mday, 2, ' '); break;
        case 'F': format(o, "%Y-%m-%d", tm); break;
        case 'G': iso_week(tm, &iy); put_num(o, (long)iy, 0, 0); break;
        case 'g': iso_week(tm, &iy); put_num(o, (long)((iy % 100 + 100) % 100), 2, '0'); break;
        case 'H': put_num(o, tm->tm_hour, 2, '0'); break;
        case 'I': put_num(o, hour12, 2, '0'); break;
        case 'j': put_num(o, tm->tm_yday + 1, 3, '0'); break;
        case 'k': put_num(o, tm->tm_hour, 2, ' '); break;
        case 'l': put_num(o, hour12, 2, ' '); break;
        case 'm': put_num(o, tm->tm_mon + 1, 2, '0'); break;
        case 'M': put_num(o, tm->tm_min, 2, '0'); break;
        case 'n': put_str(o, "\n"); break;
        case 'p': put_str(o, tm->tm_hour < 12 ? "AM" : "PM"); break;
        case 'P': put_str(o, tm->tm_hour < 12 ? "am" : "pm"); break;
        case 'r': format(o, "%I:%M:%S %p", tm); break;
        case 'R': format(o, "%H:%M", tm); break;
        case 's': {
            struct tm copy = *tm;
            put_num(o, (long)timegm(&copy), 0, 0);
            break;
        }
        case 'S': put_num(o, tm->tm_sec, 2, '0'); break;
        case 't': put_str(o, "\t"); break;
        case 'T': format(o, "%H:%M:%S", tm); break;
        case 'u': put_num(o, (tm->tm_wday + 6) % 7 + 1, 0, 0); break;
        case 'U': put_num(o, (tm->tm_yday + 7 - tm->tm_wday) / 7, 2, '0'); break;
        case 'V': put_num(o, iso_week(tm, &iy), 2, '0'); break;
        case 'w': put_num(o, tm->tm_wday, 0, 0); break;
        case 'W': put_num(o, (tm->tm_yday + 7 - (tm->tm_wday + 6) % 7) / 7, 2, '0'); break;
        case 'x': format(o, "%m/%d/%y", tm); break;
        case 'X': format(o, "%H:%M:%S", tm); break;
        case 'y': put_num(o, ((tm->tm_year + 1900L) % 100 + 100) % 100, 2, '0'); break;
        case 'Y': put_num(o, tm->tm_year + 1900L, 0, 0); break;
        case 'z': {
            long off = tm->tm_gmtoff, a = off < 0 ? -off : off;
            char buf[8];
            snprintf(buf, sizeof(buf), "%c%02ld%02ld", off < 0 ? '-' : '+', a / 3600, a / 60 % 60);
            put_str(o, buf);
            break;
        }
        case 'Z': put_str(o, tm->tm_zone ? tm->tm_zone : "UTC"); break;
        case '%': put_str(o, "%"); break;
        case '\0':
            fmt--;
            break;
        default: {
            char bad[3] = { '%', *fmt, 0 };
            put_str(o, bad);
            break;
        }
        }
    }
}

/* 0 when the result and its NUL do not fit, as C says. */
size_t strftime(char *__krunc_restrict s, size_t max, const char *__krunc_restrict fmt,
                const struct tm *__krunc_restrict tm)
{
    struct out o = { s, max, 0 };
    if (max == 0)
        return 0;
    format(&o, fmt, tm);
    *o.p = '\0';
    return o.full ? 0 : (size_t)(o.p - s);
}

char *asctime_r(const struct tm *__krunc_restrict tm, char *__krunc_restrict buf)
{
    char day[4] = "???", mon[4] = "???";
    if ((unsigned)tm->tm_wday < 7)
        memcpy(day, day_names[tm->tm_wday], 3);
    if ((unsigned)tm->tm_mon < 12)
        memcpy(mon, month_names[tm->tm_mon], 3);
    /* C's own layout: "Sun Sep 16 01:03:52 1973\n". */
    snprintf(buf, 26, "%.3s %.3s%3d %.2d:%.2d:%.2d %d\n", day, mon, tm->tm_mday, tm->tm_hour,
             tm->tm_min, tm->tm_sec, tm->tm_year + 1900);
    return buf;
}

char *asctime(const struct tm *tm)
{
    static char buf[32];
    return asctime_r(tm, buf);
}

char *ctime_r(const time_t *t, char *buf)
{
    struct tm tm;
    return localtime_r(t, &tm) ? asctime_r(&tm, buf) : 0;
}

char *ctime(const time_t *t)
{
    static char buf[32];
    return ctime_r(t, buf);
}
