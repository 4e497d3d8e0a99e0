/*
 * execve for payloads: the new program runs under KM too. KM checks the
 * target as Linux checks it before its point of no return (so a bad target
 * is an error the old program gets back), then re-executes itself through
 * /proc/self/exe with the same KM options, the new payload and argv, and
 * the new environment as its own (which a KM passes to its payload).
 *
 * What Linux keeps across execve, the host kernel keeps for us: the pid,
 * descriptors without FD_CLOEXEC (KM's own are all close-on-exec), the cwd,
 * ignored signals, the signal mask (passed as --sigmask, see signal.c) and
 * pending signals.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "km.h"

#define ARG_STRLEN_MAX  (32 * KM_PAGE_SIZE)     /* Linux's MAX_ARG_STRLEN */
#define ARGS_TOTAL_MAX  (KM_STACK_SIZE / 2)     /* what stack.c accepts */

/* A NULL-terminated guest array of strings; NULL means empty, as Linux allows. */
static int64_t read_strv(struct km *km, uint64_t gva, char ***out, int *count, size_t *total)
{
    size_t n = 0, cap = 16;
    char **v = malloc(cap * sizeof(char *));
    int err;

    if (!v)
        return -ENOMEM;
    for (; gva; gva += sizeof(uint64_t)) {
        uint64_t p;
        const void *slot = km_gptr(km, gva, sizeof(p));
        if (!slot) {
            free(v);
            return -EFAULT;
        }
        memcpy(&p, slot, sizeof(p));
        if (p == 0)
            break;
        const char *s = km_gstrn(km, p, ARG_STRLEN_MAX, -E2BIG, &err);
        if (!s || (*total += strlen(s) + 1 + sizeof(char *)) > ARGS_TOTAL_MAX) {
            free(v);
            return s ? -E2BIG : err;
        }
        if (n + 1 >= cap) {
            char **bigger = realloc(v, (cap *= 2) * sizeof(char *));
            if (!bigger) {
                free(v);
                return -ENOMEM;
            }
            v = bigger;
        }
        v[n++] = (char *)s;
    }
    v[n] = NULL;
    *out = v;
    *count = (int)n;
    return 0;
}

static char *strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strdup_printf(const char *fmt, ...)
{
    char *s;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

/* KM's command line for the new payload: this KM's options, minus the environment ones. */
static char **km_command(struct km *km, const char *path, char **argv, int argc)
{
    const struct km_options *o = &km->opt;
    char **cmd = calloc((size_t)argc + 16, sizeof(char *));
    int n = 0;

    if (!cmd)
        return NULL;
    cmd[n++] = (char *)km->self;
    if (o->verbose)
        cmd[n++] = o->verbose_filter ? strdup_printf("--verbose=%s", o->verbose_filter)
                                     : "--verbose";
    if (o->log_path)
        cmd[n++] = strdup_printf("--km-log-to=%s", o->log_path);
    if (o->device)
        cmd[n++] = strdup_printf("--virt-device=%s", o->device);
    if (o->coredump)
        cmd[n++] = strdup_printf("--coredump=%s", o->coredump);
    if (argc == 0 || strcmp(argv[0], path) != 0)
        cmd[n++] = strdup_printf("--argv0=%s", argc ? argv[0] : "");
    cmd[n++] = strdup_printf("--sigmask=%llx", (unsigned long long)km_signals_mask(km));
    if (o->snapshot)
        cmd[n++] = strdup_printf("--snapshot=%s", o->snapshot);
    if (o->mgtpipe)
        cmd[n++] = strdup_printf("--mgtpipe=%s", o->mgtpipe);     /* bound again there */
    else if (km->mgt_listen_fd >= 0 && fcntl(km->mgt_listen_fd, F_SETFD, 0) == 0)
        cmd[n++] = strdup_printf("--mgt-fd=%d", km->mgt_listen_fd);
    cmd[n++] = "--";
    cmd[n++] = (char *)path;
    for (int i = 1; i < argc; i++)
        cmd[n++] = argv[i];
    for (int i = 0; i < n; i++)
        if (!cmd[i]) {
            free(cmd);
            return NULL;
        }
    return cmd;
}

static int64_t do_execve(struct km *km, uint64_t path_gva, uint64_t argv_gva, uint64_t envp_gva)
{
    static struct km_refusal why;
    struct km_image img;
    char **argv = NULL, **envp = NULL, **cmd;
    size_t total = 0;
    int argc, envc, err;
    int64_t rc;

    const char *path = km_gstr(km, path_gva, &err);
    if (!path)
        return err;
    if ((rc = read_strv(km, argv_gva, &argv, &argc, &total)) != 0 ||
        (rc = read_strv(km, envp_gva, &envp, &envc, &total)) != 0)
        goto out;
    /* As Linux since 5.18: an empty argv runs the program with argv[0] = "". */
    static char *empty_argv[] = { "", NULL };
    struct km_target t = { .path = path, .argv = argc ? argv : empty_argv,
                           .argc = argc ? argc : 1, .execfn = path };
    if (access(path, X_OK) < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = km_load_target(km, &t, &img, true, &why)) != 0) {
        if (km->trace)
            km_trace(km, "execve refused: %s", why.msg);
        goto out;
    }
    if (!(cmd = km_command(km, path, argc ? argv : empty_argv, argc ? argc : 1))) {
        rc = -ENOMEM;
        goto out;
    }
    if (km->trace)
        km_trace(km, "execve(\"%s\"): re-executing KM for the new payload", path);
    km_signals_before_exec(km);
    execve("/proc/self/exe", cmd, envp);
    rc = -errno;
    km_signals_after_failed_exec(km);
    km_err(km, "execve(\"%s\"): cannot re-execute KM through /proc/self/exe: %s", path,
           km_strerror(errno));
    free(cmd);
out:
    free(argv);
    free(envp);
    return rc;
}

int64_t km_hc_execve(struct km *km, const uint64_t *a)
{
    return do_execve(km, a[0], a[1], a[2]);
}

/* Only the forms that name a path the way execve does. */
int64_t km_hc_execveat(struct km *km, const uint64_t *a)
{
    int err;
    const char *path = km_gstr(km, a[1], &err);
    if (!path)
        return err;
    if (a[4] != 0)
        return -EINVAL;         /* AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW: not supported */
    if ((int)a[0] != AT_FDCWD && path[0] != '/')
        return -ENOTSUP;
    return do_execve(km, a[1], a[2], a[3]);
}
