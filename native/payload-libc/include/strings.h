/* <strings.h>: case-insensitive comparison and the BSD byte functions. */
#ifndef _KRUNC_STRINGS_H
#define _KRUNC_STRINGS_H

#include <bits/krunc.h>

__KRUNC_BEGIN

int strcasecmp(const char *a, const char *b);
int strncasecmp(const char *a, const char *b, size_t n);
void bzero(void *p, size_t n);
void explicit_bzero(void *p, size_t n);
int bcmp(const void *a, const void *b, size_t n);
void bcopy(const void *src, void *dst, size_t n);
int ffs(int x);
int ffsl(long x);
int ffsll(long long x);
char *index(const char *s, int c);
char *rindex(const char *s, int c);

__KRUNC_END

#endif
