/*
 * files PATH: writes a known line to PATH, reads it back, prints what was
 * read and exits 0; on any failure prints "files: <step>: <ERRNO>" and
 * exits 1.
 */
#include "km_rt.h"

static const char content[] = "krun km_payloads files test\n";

static int fail(const char *step, long err)
{
    rt_dprintf(2, "files: %s: %s (%ld)\n", step, rt_errname(err), err);
    return 1;
}

int main(int argc, char **argv, char **envp)
{
    char buf[256];
    struct stat st;
    long fd, n;

    (void)envp;
    if (argc != 2) {
        rt_dprintf(2, "usage: files PATH\n");
        return 2;
    }
    if ((fd = rt_open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
        return fail("open for writing", fd);
    if ((n = rt_write((int)fd, content, sizeof(content) - 1)) != sizeof(content) - 1)
        return fail("write", n < 0 ? n : -EIO);
    rt_close((int)fd);

    if ((fd = rt_open(argv[1], O_RDONLY, 0)) < 0)
        return fail("open for reading", fd);
    if ((n = rt_fstat((int)fd, &st)) < 0 || st.st_size != sizeof(content) - 1)
        return fail("fstat", n < 0 ? n : -EIO);
    if ((n = rt_read((int)fd, buf, sizeof(buf))) < 0)
        return fail("read", n);
    rt_close((int)fd);
    if (n != sizeof(content) - 1 || memcmp(buf, content, (size_t)n) != 0)
        return fail("compare", -EIO);
    rt_write(1, buf, (size_t)n);
    return 0;
}
