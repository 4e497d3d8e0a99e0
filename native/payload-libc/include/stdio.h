/*
 * <stdio.h>: buffered streams over file descriptors, and formatted output
 * and input without floating point (a %f/%e/%g/%a conversion prints "?"
 * and consumes its double; scanf's float conversions fail to match).
 */
#ifndef _KRUNC_STDIO_H
#define _KRUNC_STDIO_H

#include <bits/krunc.h>

__KRUNC_BEGIN

typedef struct __krunc_file FILE;
typedef struct {
    off_t __pos;
} fpos_t;

#define EOF (-1)
#define BUFSIZ 4096
#define FILENAME_MAX 4096
#define FOPEN_MAX 16
#define L_tmpnam 20
#define TMP_MAX 238328
#define P_tmpdir "/tmp"

#define _IOFBF 0
#define _IOLBF 1
#define _IONBF 2

#ifndef SEEK_SET
#define SEEK_SET 0
#define SEEK_CUR 1
#define SEEK_END 2
#endif

extern FILE *stdin, *stdout, *stderr;
#define stdin stdin
#define stdout stdout
#define stderr stderr

FILE *fopen(const char *__krunc_restrict path, const char *__krunc_restrict mode);
FILE *fdopen(int fd, const char *mode);
FILE *freopen(const char *__krunc_restrict path, const char *__krunc_restrict mode,
              FILE *__krunc_restrict f);
FILE *tmpfile(void);
int fclose(FILE *f);
int fflush(FILE *f);
int fileno(FILE *f);
int setvbuf(FILE *__krunc_restrict f, char *__krunc_restrict buf, int mode, size_t size);
void setbuf(FILE *__krunc_restrict f, char *__krunc_restrict buf);
void setlinebuf(FILE *f);

size_t fread(void *__krunc_restrict p, size_t size, size_t n, FILE *__krunc_restrict f);
size_t fwrite(const void *__krunc_restrict p, size_t size, size_t n, FILE *__krunc_restrict f);
int fgetc(FILE *f);
int getc(FILE *f);
int getchar(void);
int ungetc(int c, FILE *f);
char *fgets(char *__krunc_restrict s, int n, FILE *__krunc_restrict f);
ssize_t getline(char **__krunc_restrict line, size_t *__krunc_restrict cap,
                FILE *__krunc_restrict f);
ssize_t getdelim(char **__krunc_restrict line, size_t *__krunc_restrict cap, int delim,
                 FILE *__krunc_restrict f);
int fputc(int c, FILE *f);
int putc(int c, FILE *f);
int putchar(int c);
int fputs(const char *__krunc_restrict s, FILE *__krunc_restrict f);
int puts(const char *s);

int fseek(FILE *f, long off, int whence);
int fseeko(FILE *f, off_t off, int whence);
long ftell(FILE *f);
off_t ftello(FILE *f);
void rewind(FILE *f);
int fgetpos(FILE *__krunc_restrict f, fpos_t *__krunc_restrict pos);
int fsetpos(FILE *f, const fpos_t *pos);
int feof(FILE *f);
int ferror(FILE *f);
void clearerr(FILE *f);

int printf(const char *__krunc_restrict fmt, ...) __krunc_printf(1, 2);
int fprintf(FILE *__krunc_restrict f, const char *__krunc_restrict fmt, ...) __krunc_printf(2, 3);
int dprintf(int fd, const char *__krunc_restrict fmt, ...) __krunc_printf(2, 3);
int sprintf(char *__krunc_restrict s, const char *__krunc_restrict fmt, ...) __krunc_printf(2, 3);
int snprintf(char *__krunc_restrict s, size_t n, const char *__krunc_restrict fmt, ...)
    __krunc_printf(3, 4);
int asprintf(char **__krunc_restrict s, const char *__krunc_restrict fmt, ...) __krunc_printf(2, 3);
int vprintf(const char *__krunc_restrict fmt, __builtin_va_list ap) __krunc_printf(1, 0);
int vfprintf(FILE *__krunc_restrict f, const char *__krunc_restrict fmt, __builtin_va_list ap)
    __krunc_printf(2, 0);
int vdprintf(int fd, const char *__krunc_restrict fmt, __builtin_va_list ap) __krunc_printf(2, 0);
int vsprintf(char *__krunc_restrict s, const char *__krunc_restrict fmt, __builtin_va_list ap)
    __krunc_printf(2, 0);
int vsnprintf(char *__krunc_restrict s, size_t n, const char *__krunc_restrict fmt,
              __builtin_va_list ap) __krunc_printf(3, 0);
int vasprintf(char **__krunc_restrict s, const char *__krunc_restrict fmt, __builtin_va_list ap)
    __krunc_printf(2, 0);

int scanf(const char *__krunc_restrict fmt, ...) __krunc_scanf(1, 2);
int fscanf(FILE *__krunc_restrict f, const char *__krunc_restrict fmt, ...) __krunc_scanf(2, 3);
int sscanf(const char *__krunc_restrict s, const char *__krunc_restrict fmt, ...)
    __krunc_scanf(2, 3);
int vscanf(const char *__krunc_restrict fmt, __builtin_va_list ap) __krunc_scanf(1, 0);
int vfscanf(FILE *__krunc_restrict f, const char *__krunc_restrict fmt, __builtin_va_list ap)
    __krunc_scanf(2, 0);
int vsscanf(const char *__krunc_restrict s, const char *__krunc_restrict fmt, __builtin_va_list ap)
    __krunc_scanf(2, 0);

void perror(const char *s);
int remove(const char *path);
int rename(const char *from, const char *to);

__KRUNC_END

#endif
