/* <string.h>: byte strings and memory. */
#ifndef _KRUNC_STRING_H
#define _KRUNC_STRING_H

#include <bits/krunc.h>

__KRUNC_BEGIN

void *memcpy(void *__krunc_restrict dst, const void *__krunc_restrict src, size_t n);
void *mempcpy(void *__krunc_restrict dst, const void *__krunc_restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
void *memchr(const void *s, int c, size_t n);
void *memrchr(const void *s, int c, size_t n);
void *memmem(const void *hay, size_t hlen, const void *needle, size_t nlen);
void *memccpy(void *__krunc_restrict dst, const void *__krunc_restrict src, int c, size_t n);

size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
int strcoll(const char *a, const char *b);
size_t strxfrm(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n);
char *strcpy(char *__krunc_restrict dst, const char *__krunc_restrict src);
char *strncpy(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n);
char *stpcpy(char *__krunc_restrict dst, const char *__krunc_restrict src);
char *stpncpy(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n);
size_t strlcpy(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n);
size_t strlcat(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n);
char *strcat(char *__krunc_restrict dst, const char *__krunc_restrict src);
char *strncat(char *__krunc_restrict dst, const char *__krunc_restrict src, size_t n);
char *strchr(const char *s, int c);
char *strrchr(const char *s, int c);
char *strchrnul(const char *s, int c);
char *strstr(const char *hay, const char *needle);
char *strcasestr(const char *hay, const char *needle);
size_t strspn(const char *s, const char *accept);
size_t strcspn(const char *s, const char *reject);
char *strpbrk(const char *s, const char *accept);
char *strtok(char *__krunc_restrict s, const char *__krunc_restrict delim);
char *strtok_r(char *__krunc_restrict s, const char *__krunc_restrict delim,
               char **__krunc_restrict save);
char *strsep(char **__krunc_restrict sp, const char *__krunc_restrict delim);
char *strdup(const char *s) __attribute__((__malloc__));
char *strndup(const char *s, size_t n) __attribute__((__malloc__));

char *strerror(int err);
int strerror_r(int err, char *buf, size_t n);   /* the POSIX (XSI) form: 0 or an errno */
char *strsignal(int sig);

__KRUNC_END

#endif
