/*
 * The payload to run, following "#!" lines as Linux's binfmt_script does:
 * a file starting "#!interp [arg]" runs interp with argv
 * [interp, arg (if any), the script's path, the script's args...]. As on
 * Linux, the line is at most 255 bytes: the interpreter's path must end
 * within them, a longer argument is cut there. The interpreter must be an
 * ELF payload (one level of #!, not Linux's four).
 *
 * The ELF path stays fast: a file is only read as a script after the ELF
 * loader found "#!" where the ELF magic should be.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "km.h"

#define SCRIPT_BUF 256              /* Linux's BINPRM_BUF_SIZE */

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

static int parse_script(const struct km_target *t, struct km_target *out, struct km_refusal *why)
{
    static char buf[SCRIPT_BUF + 1];
    ssize_t n;

    int fd = open(t->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return km_refuse(why, errno, "%s: %s", t->path, km_strerror(errno));
    do
        n = pread(fd, buf, SCRIPT_BUF, 0);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 2)
        return km_refuse(why, ENOEXEC, "%s: cannot read its #! line", t->path);
    buf[n] = '\0';

    /*
     * Without a newline in the buffer only its first 255 bytes count, and
     * the interpreter's path must end before them (a shorter file ends in
     * NUL padding, which ends it).
     */
    char *end = memchr(buf, '\n', (size_t)n);
    bool complete = end != NULL || n < SCRIPT_BUF;
    if (!end)
        end = buf + (n < SCRIPT_BUF ? n : SCRIPT_BUF - 1);
    while (end > buf + 2 && blank(end[-1]))
        end--;
    *end = '\0';
    char *name = buf + 2;
    while (blank(*name))
        name++;
    if (*name == '\0')
        return km_refuse(why, ENOEXEC, "%s: #! line names no interpreter", t->path);
    char *name_end = name;
    while (*name_end && !blank(*name_end))
        name_end++;
    if (!complete && name_end == end)
        return km_refuse(why, ENOEXEC, "%s: #! line too long (the interpreter's path must end "
                         "within its first %d bytes)", t->path, SCRIPT_BUF - 1);
    char *arg = NULL;
    if (*name_end) {
        *name_end = '\0';
        arg = name_end + 1;
        while (blank(*arg))
            arg++;
        if (*arg == '\0')
            arg = NULL;
    }

    char **argv = calloc((size_t)t->argc + 3, sizeof(char *));
    if (!argv)
        return km_refuse(why, ENOMEM, "%s: out of memory", t->path);
    int argc = 0;
    argv[argc++] = name;
    if (arg)
        argv[argc++] = arg;
    argv[argc++] = (char *)t->path;
    for (int i = 1; i < t->argc; i++)
        argv[argc++] = t->argv[i];
    *out = (struct km_target){ .path = name, .argv = argv, .argc = argc, .execfn = t->path };
    return 0;
}

int km_load_target(struct km *km, struct km_target *t, struct km_image *img, bool check_only,
                   struct km_refusal *why)
{
    struct km_target script;
    int rc = km_load_elf(km, t->path, img, check_only, why);

    if (rc != -ENOEXEC || !why->script)
        return rc;
    if ((rc = parse_script(t, &script, why)) != 0)
        return rc;
    rc = km_load_elf(km, script.path, img, check_only, why);
    if (rc == -ENOEXEC && why->script)
        rc = km_refuse(why, ENOEXEC, "%s: interpreter %s is a script too (it must be an ELF "
                       "payload)", t->path, script.path);
    else if (rc != 0) {
        char inner[sizeof(why->msg)];
        memcpy(inner, why->msg, sizeof(inner));
        rc = km_refuse(why, why->err, "%s: bad interpreter: %s", t->path, inner);
    }
    if (rc != 0) {
        free(script.argv);
        return rc;
    }
    *t = script;
    return 0;
}
