/*
 * <stdlib.h>: memory, process exit, environment, number parsing, sorting.
 * No floating point: strtod, atof and friends are not provided.
 */
#ifndef _KRUNC_STDLIB_H
#define _KRUNC_STDLIB_H

#include <bits/krunc.h>

__KRUNC_BEGIN

#define EXIT_SUCCESS 0
#define EXIT_FAILURE 1
#define RAND_MAX 0x7fffffff
#define MB_CUR_MAX ((size_t)1)

typedef struct {
    int quot, rem;
} div_t;
typedef struct {
    long quot, rem;
} ldiv_t;
typedef struct {
    long long quot, rem;
} lldiv_t;

void *malloc(size_t n) __attribute__((__malloc__, __alloc_size__(1)));
void *calloc(size_t n, size_t size) __attribute__((__malloc__, __alloc_size__(1, 2)));
void *realloc(void *p, size_t n) __attribute__((__alloc_size__(2)));
void *reallocarray(void *p, size_t n, size_t size) __attribute__((__alloc_size__(2, 3)));
void free(void *p);
void *aligned_alloc(size_t align, size_t n) __attribute__((__malloc__, __alloc_size__(2)));
int posix_memalign(void **out, size_t align, size_t n);

__krunc_noreturn void abort(void);
__krunc_noreturn void exit(int status);
__krunc_noreturn void _Exit(int status);
int atexit(void (*fn)(void));

char *getenv(const char *name);
int setenv(const char *name, const char *value, int overwrite);
int unsetenv(const char *name);
int putenv(char *kv);
int clearenv(void);

long strtol(const char *__krunc_restrict s, char **__krunc_restrict end, int base);
unsigned long strtoul(const char *__krunc_restrict s, char **__krunc_restrict end, int base);
long long strtoll(const char *__krunc_restrict s, char **__krunc_restrict end, int base);
unsigned long long strtoull(const char *__krunc_restrict s, char **__krunc_restrict end, int base);
int atoi(const char *s);
long atol(const char *s);
long long atoll(const char *s);

int abs(int x);
long labs(long x);
long long llabs(long long x);
div_t div(int a, int b);
ldiv_t ldiv(long a, long b);
lldiv_t lldiv(long long a, long long b);

void qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *));
void qsort_r(void *base, size_t n, size_t size,
             int (*cmp)(const void *, const void *, void *), void *arg);
void *bsearch(const void *key, const void *base, size_t n, size_t size,
              int (*cmp)(const void *, const void *));

int rand(void);
void srand(unsigned int seed);
int rand_r(unsigned int *seed);
long random(void);
void srandom(unsigned int seed);

int mkstemp(char *tmpl);
char *mkdtemp(char *tmpl);
char *realpath(const char *__krunc_restrict path, char *__krunc_restrict resolved);

__KRUNC_END

#endif
