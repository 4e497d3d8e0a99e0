/*
 * stdio streams. One buffer per stream serves either direction: it holds
 * read-ahead (F_READING) or pending output (F_WRITING), never both; a
 * switch flushes output or seeks back over unread input. stdout is line
 * buffered on a terminal and fully buffered otherwise (decided at its
 * first use), stderr is unbuffered, and exit() flushes every stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static unsigned char stdin_buf[BUFSIZ], stdout_buf[BUFSIZ];

static FILE std_err = { .fd = 2, .flags = F_WRITE | F_STATIC, .ungot = EOF };
static FILE std_out = { .fd = 1, .flags = F_WRITE | F_STATIC, .buf = stdout_buf,
                        .size = BUFSIZ, .ungot = EOF, .next = &std_err };
static FILE std_in = { .fd = 0, .flags = F_READ | F_STATIC, .buf = stdin_buf,
                       .size = BUFSIZ, .ungot = EOF, .next = &std_out };

FILE *stdin = &std_in, *stdout = &std_out, *stderr = &std_err;
static FILE *all_files = &std_in;

/* Chooses the buffering (if setvbuf did not) and gets the buffer, at first I/O. */
static void setup(FILE *f)
{
    if (!(f->flags & F_BUF_SET)) {
        f->flags |= F_BUF_SET;
        if (f == &std_err)
            f->flags |= F_NBF;
        else if (f == &std_out && isatty(f->fd))
            f->flags |= F_LBF;
    }
    if (f->flags & F_NBF) {
        f->buf = f->tiny;
        f->size = 1;
    } else if (!f->buf) {
        if (!f->size)
            f->size = BUFSIZ;
        f->buf = malloc(f->size);
        if (f->buf) {
            f->flags |= F_OWN_BUF;
        } else {    /* no memory: unbuffered still works */
            f->flags |= F_NBF;
            f->buf = f->tiny;
            f->size = 1;
        }
    }
    if (!(f->flags & (F_READING | F_WRITING)))
        f->rpos = f->rend = f->wpos = f->buf;
}

/* write() until done; a signal (EINTR) does not lose output. */
static size_t write_all(FILE *f, const unsigned char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = write(f->fd, p + done, n - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            f->flags |= F_ERR;
            break;
        }
        done += (size_t)r;
    }
    return done;
}

static int flush_write(FILE *f)
{
    if (!(f->flags & F_WRITING))
        return 0;
    size_t n = (size_t)(f->wpos - f->buf);
    size_t done = write_all(f, f->buf, n);
    f->wpos = f->buf;       /* what failed to go out is dropped, so errors do not repeat */
    f->flags &= ~F_WRITING;
    return done == n ? 0 : EOF;
}

/* Forgets read-ahead, moving the descriptor back to where the reader is. */
static void drop_read(FILE *f, int seek_back)
{
    if (!(f->flags & F_READING))
        return;
    off_t unread = (off_t)(f->rend - f->rpos) + (f->ungot != EOF);
    if (seek_back && unread)
        lseek(f->fd, -unread, SEEK_CUR);    /* fails harmlessly on pipes and terminals */
    f->rpos = f->rend = f->buf;
    f->ungot = EOF;
    f->flags &= ~F_READING;
}

size_t __krunc_fwrite(const void *data, size_t n, FILE *f)
{
    const unsigned char *p = data;

    if (!(f->flags & F_WRITE)) {
        f->flags |= F_ERR;
        errno = EBADF;
        return 0;
    }
    setup(f);
    drop_read(f, 1);
    if (n == 0)
        return 0;
    if (f->flags & F_NBF)
        return write_all(f, p, n);
    if (!(f->flags & F_LBF) && n >= f->size) {     /* big: skip the buffer */
        if (flush_write(f) < 0)
            return 0;
        return write_all(f, p, n);
    }
    f->flags |= F_WRITING;
    size_t done = 0;
    while (done < n) {
        size_t room = f->size - (size_t)(f->wpos - f->buf);
        if (room == 0) {
            if (flush_write(f) < 0)
                return done;
            f->flags |= F_WRITING;
            continue;
        }
        size_t k = n - done < room ? n - done : room;
        memcpy(f->wpos, p + done, k);
        f->wpos += k;
        done += k;
    }
    if ((f->flags & F_LBF) && memchr(p, '\n', n) && flush_write(f) < 0)
        return 0;
    return done;
}

/* Refills the read buffer; EOF at end of file or on error (flags say which). */
static int refill(FILE *f)
{
    if (!(f->flags & F_READ)) {
        f->flags |= F_ERR;
        errno = EBADF;
        return EOF;
    }
    if (f->flags & F_EOF)   /* sticky until clearerr, as C requires */
        return EOF;
    setup(f);
    if (flush_write(f) < 0)
        return EOF;
    /* Input may be waiting on a prompt: line-buffered output goes out first. */
    if ((std_out.flags & (F_LBF | F_WRITING)) == (F_LBF | F_WRITING))
        flush_write(&std_out);
    ssize_t r = read(f->fd, f->buf, f->size);
    if (r <= 0) {
        f->flags |= r == 0 ? F_EOF : F_ERR;
        return EOF;
    }
    f->rpos = f->buf;
    f->rend = f->buf + r;
    f->flags |= F_READING;
    return 0;
}

int __krunc_fgetc(FILE *f)
{
    if (f->ungot != EOF) {
        int c = f->ungot;
        f->ungot = EOF;
        return c;
    }
    if ((f->flags & F_READING) && f->rpos < f->rend)
        return *f->rpos++;
    if (refill(f) == EOF)
        return EOF;
    return *f->rpos++;
}

int fgetc(FILE *f) { return __krunc_fgetc(f); }
int getc(FILE *f) { return __krunc_fgetc(f); }
int getchar(void) { return __krunc_fgetc(stdin); }

int __krunc_ungetc(int c, FILE *f)
{
    if (c == EOF || !(f->flags & F_READ))
        return EOF;
    setup(f);
    if (flush_write(f) < 0)
        return EOF;
    if ((f->flags & F_READING) && f->rpos > f->buf && f->ungot == EOF) {
        *--f->rpos = (unsigned char)c;
    } else if (f->ungot == EOF) {
        f->ungot = (unsigned char)c;
        f->flags |= F_READING;
    } else {
        return EOF;     /* one byte of pushback is what C promises */
    }
    f->flags &= ~F_EOF;
    return (unsigned char)c;
}

int ungetc(int c, FILE *f) { return __krunc_ungetc(c, f); }

size_t fread(void *__krunc_restrict data, size_t size, size_t n, FILE *__krunc_restrict f)
{
    unsigned char *p = data;
    size_t want, done = 0;

    if (size == 0 || n == 0)
        return 0;
    if (__builtin_mul_overflow(size, n, &want)) {
        errno = EOVERFLOW;
        f->flags |= F_ERR;
        return 0;
    }
    if (f->ungot != EOF) {
        p[done++] = (unsigned char)f->ungot;
        f->ungot = EOF;
    }
    while (done < want) {
        if ((f->flags & F_READING) && f->rpos < f->rend) {
            size_t k = (size_t)(f->rend - f->rpos);
            if (k > want - done)
                k = want - done;
            memcpy(p + done, f->rpos, k);
            f->rpos += k;
            done += k;
            continue;
        }
        setup(f);
        if ((f->flags & F_READ) && !(f->flags & F_EOF) && want - done >= f->size &&
            flush_write(f) == 0) {
            /* A big read goes straight into the caller's memory. */
            ssize_t r = read(f->fd, p + done, want - done);
            if (r <= 0) {
                f->flags |= r == 0 ? F_EOF : F_ERR;
                break;
            }
            done += (size_t)r;
            continue;
        }
        if (refill(f) == EOF)
            break;
    }
    return done / size;
}

size_t fwrite(const void *__krunc_restrict p, size_t size, size_t n, FILE *__krunc_restrict f)
{
    size_t total;
    if (size == 0 || n == 0)
        return 0;
    if (__builtin_mul_overflow(size, n, &total)) {
        errno = EOVERFLOW;
        f->flags |= F_ERR;
        return 0;
    }
    return __krunc_fwrite(p, total, f) / size;
}

int fputc(int c, FILE *f)
{
    unsigned char ch = (unsigned char)c;
    if ((f->flags & F_WRITING) && !(f->flags & F_NBF) && f->wpos < f->buf + f->size) {
        *f->wpos++ = ch;    /* the common case: room in the buffer */
        if (ch == '\n' && (f->flags & F_LBF) && flush_write(f) < 0)
            return EOF;
        return ch;
    }
    return __krunc_fwrite(&ch, 1, f) == 1 ? ch : EOF;
}

int putc(int c, FILE *f) { return fputc(c, f); }
int putchar(int c) { return fputc(c, stdout); }

int fputs(const char *__krunc_restrict s, FILE *__krunc_restrict f)
{
    size_t n = strlen(s);
    return __krunc_fwrite(s, n, f) == n ? 0 : EOF;
}

int puts(const char *s)
{
    if (fputs(s, stdout) == EOF || fputc('\n', stdout) == EOF)
        return EOF;
    return 0;
}

/*
 * Up to `max` bytes of the buffered input, through the first `delim`:
 * copied to out (which may be NULL to only measure), consumed, and counted
 * in *n; *done says the delimiter came. Refills as needed; 0 at EOF/error
 * with nothing read. Scanning the buffer with memchr keeps line reads cheap.
 */
static int take_until(FILE *f, int delim, char *out, size_t max, size_t *n, int *done)
{
    *n = 0;
    *done = 0;
    if (max && f->ungot != EOF) {
        int c = __krunc_fgetc(f);
        if (out)
            out[0] = (char)c;
        *n = 1;
        *done = c == delim;
        return 1;
    }
    if (!((f->flags & F_READING) && f->rpos < f->rend) && refill(f) == EOF)
        return 0;
    size_t k = (size_t)(f->rend - f->rpos);
    if (k > max)
        k = max;
    unsigned char *hit = memchr(f->rpos, delim, k);
    if (hit) {
        k = (size_t)(hit - f->rpos) + 1;
        *done = 1;
    }
    if (out)
        memcpy(out, f->rpos, k);
    f->rpos += k;
    *n = k;
    return 1;
}

char *fgets(char *__krunc_restrict s, int n, FILE *__krunc_restrict f)
{
    size_t have = 0, got;
    int done = 0;

    if (n <= 0)
        return 0;
    while (!done && have < (size_t)n - 1 && take_until(f, '\n', s + have, (size_t)n - 1 - have,
                                                      &got, &done))
        have += got;
    if (have == 0 && n > 1)
        return 0;
    s[have] = '\0';
    return s;
}

ssize_t getdelim(char **__krunc_restrict line, size_t *__krunc_restrict cap, int delim,
                 FILE *__krunc_restrict f)
{
    size_t have = 0, got;
    int done = 0;

    if (!line || !cap) {
        errno = EINVAL;
        return -1;
    }
    while (!done) {
        if (!*line || have + 2 > *cap) {
            size_t ncap = *cap < 64 ? 128 : *cap * 2;
            char *nl = realloc(*line, ncap);
            if (!nl) {
                f->flags |= F_ERR;
                return -1;
            }
            *line = nl;
            *cap = ncap;
        }
        if (!take_until(f, delim, *line + have, *cap - 1 - have, &got, &done))
            break;
        have += got;
    }
    if (have == 0)
        return -1;
    (*line)[have] = '\0';
    return (ssize_t)have;
}

ssize_t getline(char **__krunc_restrict line, size_t *__krunc_restrict cap,
                FILE *__krunc_restrict f)
{
    return getdelim(line, cap, '\n', f);
}

/* ---- opening and closing -------------------------------------------------- */

/* fopen's mode to open(2) flags and stream flags; -1 for a bad mode. */
static int parse_mode(const char *mode, int *oflags, unsigned int *fflags)
{
    switch (*mode) {
    case 'r': *oflags = O_RDONLY; *fflags = F_READ; break;
    case 'w': *oflags = O_WRONLY | O_CREAT | O_TRUNC; *fflags = F_WRITE; break;
    case 'a': *oflags = O_WRONLY | O_CREAT | O_APPEND; *fflags = F_WRITE | F_APPEND; break;
    default:
        errno = EINVAL;
        return -1;
    }
    for (mode++; *mode; mode++) {
        if (*mode == '+') {
            *oflags = (*oflags & ~O_ACCMODE) | O_RDWR;
            *fflags |= F_READ | F_WRITE;
        } else if (*mode == 'x') {
            *oflags |= O_EXCL;
        } else if (*mode == 'e') {
            *oflags |= O_CLOEXEC;
        }   /* 'b' and anything else: ignored, as glibc does */
    }
    return 0;
}

static FILE *new_stream(int fd, unsigned int fflags)
{
    FILE *f = calloc(1, sizeof(*f));
    if (!f)
        return 0;
    f->fd = fd;
    f->flags = fflags;
    f->ungot = EOF;
    f->next = all_files;
    all_files = f;
    return f;
}

FILE *fopen(const char *__krunc_restrict path, const char *__krunc_restrict mode)
{
    int oflags;
    unsigned int fflags;
    if (parse_mode(mode, &oflags, &fflags) < 0)
        return 0;
    int fd = open(path, oflags, 0666);
    if (fd < 0)
        return 0;
    FILE *f = new_stream(fd, fflags);
    if (!f)
        close(fd);
    return f;
}

FILE *fdopen(int fd, const char *mode)
{
    int oflags;
    unsigned int fflags;
    if (parse_mode(mode, &oflags, &fflags) < 0)
        return 0;
    if (fcntl(fd, F_GETFD, 0) < 0)
        return 0;
    return new_stream(fd, fflags);
}

/* The stream keeps its descriptor number, so freopen(..., stdout) redirects fd 1. */
FILE *freopen(const char *__krunc_restrict path, const char *__krunc_restrict mode,
              FILE *__krunc_restrict f)
{
    int oflags;
    unsigned int fflags;

    fflush(f);
    if (!path || parse_mode(mode, &oflags, &fflags) < 0) {
        if (!path)
            errno = EBADF;  /* changing the mode of the same file is not supported */
        return 0;
    }
    int fd = open(path, oflags, 0666);
    if (fd < 0)
        return 0;
    if (f->fd >= 0 && fd != f->fd) {
        if (dup2(fd, f->fd) < 0) {
            close(fd);
            return 0;
        }
        close(fd);
        fd = f->fd;
    }
    drop_read(f, 0);
    f->fd = fd;
    f->flags = fflags | (f->flags & (F_STATIC | F_OWN_BUF));
    f->flags &= ~(F_NBF | F_LBF | F_BUF_SET);
    if (f->buf == f->tiny) {    /* it was unbuffered: buffer it again */
        f->buf = 0;
        f->size = 0;
    }
    return f;
}

int fclose(FILE *f)
{
    int r = fflush(f);
    if (f->fd >= 0 && close(f->fd) < 0)
        r = EOF;
    f->fd = -1;
    if (f->flags & F_STATIC) {
        f->flags = F_STATIC;    /* neither readable nor writable any more */
        return r;
    }
    for (FILE **pp = &all_files; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    if (f->flags & F_OWN_BUF)
        free(f->buf);
    free(f);
    return r;
}

int fflush(FILE *f)
{
    if (!f) {
        int r = 0;
        for (FILE *g = all_files; g; g = g->next)
            if (flush_write(g) < 0)
                r = EOF;
        return r;
    }
    if (f->flags & F_READING) {
        /*
         * glibc's meaning: give unread input back to the file. Where that is
         * impossible (a pipe, a terminal) the input stays buffered, not lost.
         */
        off_t unread = (off_t)(f->rend - f->rpos) + (f->ungot != EOF);
        if (unread == 0 || lseek(f->fd, -unread, SEEK_CUR) >= 0)
            drop_read(f, 0);
        return 0;
    }
    return flush_write(f);
}

void __krunc_stdio_flush_all(void)
{
    fflush(0);
}

int setvbuf(FILE *__krunc_restrict f, char *__krunc_restrict buf, int mode, size_t size)
{
    if (mode != _IOFBF && mode != _IOLBF && mode != _IONBF) {
        errno = EINVAL;
        return -1;
    }
    fflush(f);
    if (f->flags & F_OWN_BUF)
        free(f->buf);
    f->flags &= ~(F_OWN_BUF | F_NBF | F_LBF | F_READING | F_WRITING);
    f->flags |= F_BUF_SET | (mode == _IONBF ? F_NBF : mode == _IOLBF ? F_LBF : 0);
    if (mode != _IONBF && buf && size) {
        f->buf = (unsigned char *)buf;
        f->size = size;
    } else {
        f->buf = 0;     /* setup() allocates one of `size` (or BUFSIZ) bytes */
        f->size = mode == _IONBF ? 0 : size;
    }
    f->rpos = f->rend = f->wpos = f->buf;
    return 0;
}

void setbuf(FILE *__krunc_restrict f, char *__krunc_restrict buf)
{
    setvbuf(f, buf, buf ? _IOFBF : _IONBF, BUFSIZ);
}

void setlinebuf(FILE *f)
{
    setvbuf(f, 0, _IOLBF, 0);
}

int fileno(FILE *f)
{
    if (f->fd < 0) {
        errno = EBADF;
        return -1;
    }
    return f->fd;
}

/* ---- positioning ---------------------------------------------------------- */

int fseeko(FILE *f, off_t off, int whence)
{
    if (flush_write(f) < 0)
        return -1;
    if (whence == SEEK_CUR && (f->flags & F_READING))
        off -= (off_t)(f->rend - f->rpos) + (f->ungot != EOF);
    drop_read(f, 0);
    if (lseek(f->fd, off, whence) < 0)
        return -1;
    f->flags &= ~F_EOF;
    return 0;
}

int fseek(FILE *f, long off, int whence) { return fseeko(f, off, whence); }

off_t ftello(FILE *f)
{
    /* Appended output lands at the end, wherever the offset was: flush to know. */
    if ((f->flags & F_APPEND) && flush_write(f) < 0)
        return -1;
    off_t pos = lseek(f->fd, 0, SEEK_CUR);
    if (pos < 0)
        return -1;
    if (f->flags & F_READING)
        pos -= (off_t)(f->rend - f->rpos) + (f->ungot != EOF);
    else if (f->flags & F_WRITING)
        pos += (off_t)(f->wpos - f->buf);
    return pos;
}

long ftell(FILE *f) { return ftello(f); }

void rewind(FILE *f)
{
    fseeko(f, 0, SEEK_SET);
    f->flags &= ~F_ERR;
}

int fgetpos(FILE *__krunc_restrict f, fpos_t *__krunc_restrict pos)
{
    off_t p = ftello(f);
    if (p < 0)
        return -1;
    pos->__pos = p;
    return 0;
}

int fsetpos(FILE *f, const fpos_t *pos) { return fseeko(f, pos->__pos, SEEK_SET); }
int feof(FILE *f) { return (f->flags & F_EOF) != 0; }
int ferror(FILE *f) { return (f->flags & F_ERR) != 0; }
void clearerr(FILE *f) { f->flags &= ~(F_EOF | F_ERR); }

/* ---- the rest ------------------------------------------------------------- */

void perror(const char *s)
{
    const char *m = strerror(errno);
    if (s && *s)
        fprintf(stderr, "%s: %s\n", s, m);
    else
        fprintf(stderr, "%s\n", m);
}

/* unlink, or rmdir for a directory (Linux's unlink says EISDIR). */
int remove(const char *path)
{
    if (unlink(path) == 0)
        return 0;
    if (errno != EISDIR)
        return -1;
    return rmdir(path);
}

FILE *tmpfile(void)
{
    char name[] = "/tmp/tmpfileXXXXXX";
    int fd = mkstemp(name);
    if (fd < 0)
        return 0;
    unlink(name);
    FILE *f = fdopen(fd, "w+");
    if (!f)
        close(fd);
    return f;
}

/* ---- printf to streams and descriptors ------------------------------------ */

/* Output gathered in a local buffer: an unbuffered stderr still gets one write per call. */
struct file_sink {
    struct __krunc_sink s;
    FILE *f;
    int fd;
    size_t n;
    char buf[512];
};

static void sink_flush(struct file_sink *fs)
{
    if (!fs->n)
        return;
    if (fs->f) {
        if (__krunc_fwrite(fs->buf, fs->n, fs->f) != fs->n)
            fs->s.error = 1;
    } else {
        size_t done = 0;
        while (done < fs->n) {
            ssize_t r = write(fs->fd, fs->buf + done, fs->n - done);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                fs->s.error = 1;
                break;
            }
            done += (size_t)r;
        }
    }
    fs->n = 0;
}

static void file_out(struct __krunc_sink *s, const char *p, size_t n)
{
    struct file_sink *fs = (struct file_sink *)s;
    while (n) {
        size_t room = sizeof(fs->buf) - fs->n;
        size_t k = n < room ? n : room;
        memcpy(fs->buf + fs->n, p, k);
        fs->n += k;
        p += k;
        n -= k;
        if (fs->n == sizeof(fs->buf))
            sink_flush(fs);
    }
}

static int format_to(FILE *f, int fd, const char *fmt, va_list ap)
{
    struct file_sink fs;
    fs.s.out = file_out;
    fs.s.count = 0;
    fs.s.error = 0;
    fs.f = f;
    fs.fd = fd;
    fs.n = 0;
    int r = __krunc_vformat(&fs.s, fmt, ap);
    sink_flush(&fs);
    return fs.s.error ? -1 : r;
}

int vfprintf(FILE *__krunc_restrict f, const char *__krunc_restrict fmt, va_list ap)
{
    return format_to(f, -1, fmt, ap);
}

int vprintf(const char *__krunc_restrict fmt, va_list ap)
{
    return format_to(stdout, -1, fmt, ap);
}

int vdprintf(int fd, const char *__krunc_restrict fmt, va_list ap)
{
    return format_to(0, fd, fmt, ap);
}

int fprintf(FILE *__krunc_restrict f, const char *__krunc_restrict fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf(f, fmt, ap);
    va_end(ap);
    return r;
}

int printf(const char *__krunc_restrict fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf(stdout, fmt, ap);
    va_end(ap);
    return r;
}

int dprintf(int fd, const char *__krunc_restrict fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vdprintf(fd, fmt, ap);
    va_end(ap);
    return r;
}
