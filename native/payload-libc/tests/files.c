/*
 * Files: descriptors (open, write, lseek, read, fstat, stat, unlink,
 * rename) and streams (fopen modes, fprintf/fgets/fread/fwrite, fseek,
 * ftell, ungetc, getline, "r+" switching, append), in the directory
 * argv[1]. Leaves argv[1]/kept.txt for the test to read from the host.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char path_buf[4][512];

static const char *in_dir(int slot, const char *dir, const char *name)
{
    snprintf(path_buf[slot], sizeof(path_buf[slot]), "%s/%s", dir, name);
    return path_buf[slot];
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: files DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    const char *raw = in_dir(0, dir, "raw.bin");
    struct stat st;
    char buf[256];

    /* ---- descriptors ---- */
    int fd = open(raw, O_CREAT | O_TRUNC | O_RDWR, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, "hello, world\n", 13) == 13);
    CHECK(lseek(fd, 7, SEEK_SET) == 7);
    CHECK(write(fd, "there", 5) == 5);
    CHECK(lseek(fd, 0, SEEK_CUR) == 12);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    memset(buf, 0, sizeof(buf));
    CHECK(read(fd, buf, sizeof(buf)) == 13 && strcmp(buf, "hello, there\n") == 0);
    CHECK(read(fd, buf, sizeof(buf)) == 0);
    CHECK(fstat(fd, &st) == 0 && st.st_size == 13 && S_ISREG(st.st_mode));
    CHECK((st.st_mode & 0777) == (0644 & ~umask(022)));
    CHECK(pwrite(fd, "H", 1, 0) == 1 && pread(fd, buf, 5, 0) == 5 && memcmp(buf, "Hello", 5) == 0);
    CHECK(ftruncate(fd, 5) == 0 && fstat(fd, &st) == 0 && st.st_size == 5);
    CHECK(close(fd) == 0);
    CHECK(stat(raw, &st) == 0 && st.st_size == 5 && st.st_nlink == 1);
    CHECK(access(raw, R_OK | W_OK) == 0);
    const char *moved = in_dir(1, dir, "moved.bin");
    CHECK(rename(raw, moved) == 0);
    CHECK(stat(raw, &st) < 0 && errno == ENOENT);
    CHECK(unlink(moved) == 0);
    CHECK(unlink(moved) < 0 && errno == ENOENT);
    CHECK(open(moved, O_RDONLY) < 0 && errno == ENOENT);

    /* ---- streams: write, then read back ---- */
    const char *text = in_dir(2, dir, "text.txt");
    FILE *f = fopen(text, "w");
    CHECK(f != NULL);
    for (int i = 0; i < 200; i++)
        fprintf(f, "line %d\n", i);
    long size = ftell(f);
    CHECK(fclose(f) == 0);
    CHECK(stat(text, &st) == 0 && st.st_size == size && size == 1690);

    f = fopen(text, "r");
    CHECK(f != NULL);
    int lines = 0, ok = 1;
    while (fgets(buf, sizeof(buf), f)) {
        char want[32];
        snprintf(want, sizeof(want), "line %d\n", lines++);
        ok &= strcmp(buf, want) == 0;
    }
    CHECK(ok && lines == 200 && feof(f) && !ferror(f));
    CHECK(fgetc(f) == EOF);         /* end of file is sticky */
    clearerr(f);
    CHECK(!feof(f));
    CHECK(fseek(f, 7, SEEK_SET) == 0 && ftell(f) == 7);
    CHECK(fgets(buf, sizeof(buf), f) && strcmp(buf, "line 1\n") == 0);
    CHECK(ftell(f) == 14);
    CHECK(fseek(f, -7, SEEK_END) == 0 && fgets(buf, sizeof(buf), f) &&
          strcmp(buf, "ne 199\n") == 0);
    rewind(f);
    int c = fgetc(f);
    CHECK(c == 'l' && ungetc('X', f) == 'X' && ftell(f) == 0);
    CHECK(fread(buf, 1, 6, f) == 6 && memcmp(buf, "Xine 0", 6) == 0);
    CHECK(fseek(f, 2, SEEK_CUR) == 0 && fgetc(f) == 'i' && ftell(f) == 9);
    rewind(f);
    char *line = NULL;
    size_t cap = 0;
    CHECK(getline(&line, &cap, f) == 7 && strcmp(line, "line 0\n") == 0);
    free(line);
    int first = -1, second = -1;
    CHECK(fscanf(f, "line %d line %d", &first, &second) == 2 && first == 1 && second == 2);
    CHECK(fgetc(f) == '\n' && ftell(f) == 21);
    CHECK(fclose(f) == 0);

    /* Binary round trip through fwrite/fread, bigger than the buffer. */
    static unsigned char block[10000], back[10000];
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] = (unsigned char)(i * 13);
    const char *bin = in_dir(3, dir, "block.bin");
    f = fopen(bin, "wb");
    CHECK(f && fwrite(block, 100, 100, f) == 100 && fclose(f) == 0);
    f = fopen(bin, "rb");
    CHECK(f && fread(back, 1, 37, f) == 37 && fread(back + 37, 1, sizeof(back), f) == 9963);
    CHECK(memcmp(block, back, sizeof(block)) == 0 && feof(f));
    fclose(f);

    /* "r+": read, then write in place, then read again. */
    f = fopen(bin, "r+");
    CHECK(f && fgetc(f) == 0 && fseek(f, 0, SEEK_CUR) == 0 && fputs("AB", f) == 0);
    CHECK(fseek(f, 0, SEEK_SET) == 0 && fread(back, 1, 4, f) == 4);
    CHECK(back[0] == 0 && back[1] == 'A' && back[2] == 'B' && back[3] == 39);
    fclose(f);
    CHECK(remove(bin) == 0);

    /* Append mode writes at the end whatever the position. */
    f = fopen(text, "a+");
    CHECK(f && fseek(f, 0, SEEK_SET) == 0 && fputs("tail\n", f) == 0 && ftell(f) == 1695);
    fclose(f);
    CHECK(stat(text, &st) == 0 && st.st_size == 1695);
    CHECK(unlink(text) == 0);

    /* Modes and failures. */
    errno = 0;
    CHECK(fopen(text, "r") == NULL && errno == ENOENT);
    CHECK(fopen(text, "q") == NULL && errno == EINVAL);
    f = fopen(in_dir(0, dir, "kept.txt"), "w");
    CHECK(f && fopen(path_buf[0], "wx") == NULL && errno == EEXIST);
    fprintf(f, "kept %s %d\n", "by", 42);
    CHECK(fclose(f) == 0);
    f = fopen(path_buf[0], "r");
    CHECK(f && fputc('x', f) == EOF && ferror(f));      /* not opened for writing */
    fclose(f);
    int fds[2];
    CHECK(pipe(fds) == 0);
    FILE *w = fdopen(fds[1], "w"), *r = fdopen(fds[0], "r");
    CHECK(w && r && fprintf(w, "through a pipe\n") == 15 && fflush(w) == 0);
    CHECK(fgets(buf, sizeof(buf), r) && strcmp(buf, "through a pipe\n") == 0);
    fclose(w);
    CHECK(fgetc(r) == EOF && feof(r));
    fclose(r);
    /* setvbuf: unbuffered output is on disk at once, line buffering at each newline. */
    const char *vb = in_dir(1, dir, "setvbuf.txt");
    f = fopen(vb, "w");
    CHECK(f && setvbuf(f, NULL, _IONBF, 0) == 0 && fputc('a', f) == 'a');
    CHECK(stat(vb, &st) == 0 && st.st_size == 1);
    static char lbuf[64];
    CHECK(setvbuf(f, lbuf, _IOLBF, sizeof(lbuf)) == 0 && fputs("bc", f) == 0);
    CHECK(stat(vb, &st) == 0 && st.st_size == 1);
    CHECK(fputs("d\n", f) == 0 && stat(vb, &st) == 0 && st.st_size == 5);
    CHECK(setvbuf(f, NULL, 3, 0) == -1);
    /* freopen: the same stream, now on another file. */
    const char *other = in_dir(2, dir, "freopen.txt");
    CHECK(freopen(other, "w", f) == f && fputs("reopened\n", f) == 0 && fclose(f) == 0);
    CHECK(stat(other, &st) == 0 && st.st_size == 9 && stat(vb, &st) == 0 && st.st_size == 5);
    CHECK(unlink(vb) == 0 && unlink(other) == 0);
    FILE *t = tmpfile();
    CHECK(t && fputs("temp", t) == 0 && fseek(t, 0, SEEK_SET) == 0 && fgetc(t) == 't');
    fclose(t);
    return checks_done();
}
