/*
 * krun-km: runs a Kontain payload (a static x86-64 ELF that talks to the
 * monitor through port-I/O hypercalls) in a one-vCPU KVM virtual machine.
 *
 * This file: command line, messages, signals and the overall sequence.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "km.h"

extern char **environ;

static struct km km;    /* one per process; large (page bitmap), so static */
struct km *km_self = &km;

static const char usage_text[] =
    "Usage: km [options] payload[.km] [payload args...]\n"
    "       km [options] SNAPSHOT    (resume an ET_CORE snapshot written by this KM)\n"
    "Runs a Kontain payload in a KVM virtual machine. Options end at the first\n"
    "non-option argument, which is the payload path (PATH is not searched).\n"
    "\n"
    "  -v, --version           print the version and exit\n"
    "  -h, --help              print this help and exit\n"
    "      --verbose[=REGEX]   log each hypercall (only those whose name matches REGEX)\n"
    "  -k, --km-log-to=FILE    where KM's own messages go: FILE (appended), 'stderr'\n"
    "                          or 'none'; default: stderr on a terminal, else\n"
    "                          /tmp/km_<pid>.log\n"
    "      --putenv=KEY=VALUE  payload environment variable; repeatable; the given\n"
    "                          variables replace the host environment\n"
    "      --copyenv           pass the host environment through (the default;\n"
    "                          with --putenv, the given variables are added to it)\n"
    "      --virt-device=PATH  virtualization device (default: first existing of\n"
    "                          /dev/kontain, /dev/kvm, /dev/kkm)\n"
    "      --coredump=FILE     core file when the payload dies of SIGSEGV, SIGILL...\n"
    "                          (default: ./kmcore)\n"
    "      --argv0=NAME        the payload's argv[0] (default: its path as given)\n"
    "      --sigmask=HEX       the payload's initial signal mask (default: KM's)\n"
    "      --snapshot=FILE     where hypercall 505 writes a snapshot (default: ./kmsnap)\n"
    "      --mgtpipe=PATH      listen at PATH (AF_UNIX) for snapshot requests\n"
    "      --mgt-fd=N          the same on an inherited, listening AF_UNIX socket N\n"
    "\n"
    "Exit status: the payload's exit code. If the payload dies of signal N (sent to\n"
    "KM, or a guest fault), KM dies of signal N too (a shell shows 128+N); 127\n"
    "payload not found; 126 payload unreadable or not a valid payload; 2 usage\n"
    "error; 1 KVM error or a snapshot that cannot be resumed (km: SNAP: ...).\n";

bool km_is_private_fd(const struct km *k, int fd)
{
    return fd >= 0 &&
           (fd == k->vcpu_fd || fd == k->vm_fd || fd == k->log_fd || km_mgt_private_fd(fd));
}

static void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "km: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nUsage: km [options] payload [args...] (try 'km --help')\n");
    exit(KM_EXIT_USAGE);
}

/*
 * Matches an option that takes a value in any of the accepted spellings:
 * "-k FILE", "-kFILE", "--km-log-to=FILE", "--km-log-to FILE".
 */
static bool option_value(int argc, char **argv, int *i, const char *shortopt,
                         const char *longopt, const char **value)
{
    const char *a = argv[*i];
    size_t llen = strlen(longopt);
    const char *inline_value = NULL;

    if (shortopt && strncmp(a, shortopt, 2) == 0 && a[1] != '-')
        inline_value = a[2] ? a + 2 : NULL;
    else if (strncmp(a, longopt, llen) == 0 && a[llen] == '=')
        inline_value = a + llen + 1;
    else if (strcmp(a, longopt) != 0)
        return false;

    if (inline_value) {
        *value = inline_value;
    } else {
        if (*i + 1 >= argc)
            usage_error("option '%s' requires a value", a);
        *value = argv[++*i];
    }
    return true;
}

static void parse_options(struct km_options *o, int argc, char **argv)
{
    const char *value;
    int i;

    o->putenv = calloc((size_t)argc + 1, sizeof(char *));
    if (!o->putenv)
        exit(KM_EXIT_SETUP);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
            printf("%s (Kontain-compatible KVM monitor for krun)\n", KM_VERSION);
            exit(0);
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            exit(0);
        } else if (strcmp(a, "--verbose") == 0) {
            o->verbose = true;
        } else if (strncmp(a, "--verbose=", 10) == 0) {
            o->verbose = true;
            o->verbose_filter = a + 10;
        } else if (strcmp(a, "--copyenv") == 0) {
            o->copyenv = true;
        } else if (option_value(argc, argv, &i, "-k", "--km-log-to", &value)) {
            o->log_path = value;
        } else if (option_value(argc, argv, &i, NULL, "--virt-device", &value)) {
            o->device = value;
        } else if (option_value(argc, argv, &i, NULL, "--coredump", &value)) {
            o->coredump = value;
        } else if (option_value(argc, argv, &i, NULL, "--argv0", &value)) {
            o->argv0 = value;
        } else if (option_value(argc, argv, &i, NULL, "--sigmask", &value)) {
            char *end;
            errno = 0;
            o->sigmask = strtoull(value, &end, 16);
            if (errno || end == value || *end)
                usage_error("--sigmask needs a hexadecimal mask, got '%s'", value);
            o->have_sigmask = true;
        } else if (option_value(argc, argv, &i, NULL, "--snapshot", &value)) {
            o->snapshot = value;
        } else if (option_value(argc, argv, &i, NULL, "--mgtpipe", &value)) {
            o->mgtpipe = value;
        } else if (option_value(argc, argv, &i, NULL, "--mgt-fd", &value)) {
            char *end;
            errno = 0;
            long fd = strtol(value, &end, 10);
            if (errno || end == value || *end || fd < 0 || fd > 65535)
                usage_error("--mgt-fd needs a descriptor number, got '%s'", value);
            o->mgt_fd = (int)fd;
        } else if (option_value(argc, argv, &i, NULL, "--putenv", &value)) {
            if (!strchr(value, '=') || value[0] == '=')
                usage_error("--putenv needs KEY=VALUE, got '%s'", value);
            o->putenv[o->nputenv++] = (char *)value;
        } else {
            usage_error("unknown option '%s'", a);
        }
    }
    if (i >= argc)
        usage_error("%s", "missing payload file");
    if (o->mgtpipe && o->mgt_fd >= 0)
        usage_error("%s", "--mgtpipe and --mgt-fd exclude each other");
    o->payload = argv[i];
    o->payload_argv = argv + i;
    o->payload_argc = argc - i;
}

static bool overridden(const struct km_options *o, const char *var)
{
    size_t klen = strcspn(var, "=");
    for (int i = 0; i < o->nputenv; i++)
        if (strncmp(o->putenv[i], var, klen) == 0 && o->putenv[i][klen] == '=')
            return true;
    return false;
}

/* The payload's environment: host env, --putenv only, or host env + --putenv. */
static char **payload_env(const struct km_options *o)
{
    size_t n = 0, k = 0;
    char **env;

    if (o->nputenv == 0)
        return environ;
    if (!o->copyenv)
        return o->putenv;
    while (environ[n])
        n++;
    env = calloc(n + (size_t)o->nputenv + 1, sizeof(char *));
    if (!env)
        return o->putenv;
    for (size_t i = 0; i < n; i++)
        if (!overridden(o, environ[i]))
            env[k++] = environ[i];
    for (int i = 0; i < o->nputenv; i++)
        env[k++] = o->putenv[i];
    return env;
}

static int setup_logging(struct km *k)
{
    int rc = km_log_setup(k);
    if (rc != 0)
        return rc;
    k->trace = k->opt.verbose;
    if (k->opt.verbose_filter) {
        if (regcomp(&k->trace_filter, k->opt.verbose_filter, REG_EXTENDED | REG_NOSUB) != 0)
            usage_error("invalid --verbose regular expression '%s'", k->opt.verbose_filter);
        k->have_filter = true;
    }
    return 0;
}

/*
 * The guest shares KM's file table. Moving KM's own descriptors near the top
 * keeps the payload's numbering Linux-like (its first open gets 3) and lets
 * hypercalls refuse to touch them; a private copy of stderr keeps KM's error
 * messages working after the payload closes fd 2.
 */
static int private_fd_floor(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1024)
        return rl.rlim_cur > 16 ? (int)rl.rlim_cur - 8 : 3;
    return 1000;
}

static void hide_private_fds(struct km *k)
{
    km_log_private(k);
    k->vcpu_fd = km_hide_fd(k, k->vcpu_fd);
    k->vm_fd = km_hide_fd(k, k->vm_fd);
}

/* Exit status for a payload KM cannot start, as a shell would give it. */
static int refusal_status(const struct km_refusal *why)
{
    if (why->snapshot)
        return KM_EXIT_SETUP;
    return why->err == ENOENT || why->err == ENOTDIR ? KM_EXIT_NOTFOUND : KM_EXIT_NOEXEC;
}

/* km SNAPSHOT: the payload goes on where the snapshot stopped it. */
static int resume(struct km *k)
{
    int rc;
    if ((rc = km_resume(k, k->opt.payload)) != 0)
        return rc;
    hide_private_fds(k);
    if ((rc = km_resume_finish(k)) != 0 || (rc = km_mgt_start(k)) != 0)
        return rc;
    return km_vm_run(k);
}

int main(int argc, char **argv)
{
    static struct km_refusal why;
    struct km_image img;
    uint64_t rsp;
    int rc;

    km.log_fd = 2;
    km.vm_fd = km.vcpu_fd = -1;
    km.fd_floor = private_fd_floor();
    km.self = argv[0];
    km.mgt_listen_fd = -1;
    km.opt.mgt_fd = -1;
    parse_options(&km.opt, argc, argv);
    if ((rc = setup_logging(&km)) != 0)
        return rc;
    if ((rc = km_signals_init(&km)) != 0)
        return rc;
    if ((rc = km_mgt_init(&km)) != 0)
        return rc;
    if ((rc = km_map_guest_memory(&km)) != 0)
        return rc;
    struct km_target target = {
        .path = km.opt.payload, .argv = km.opt.payload_argv, .argc = km.opt.payload_argc,
        .execfn = km.opt.payload,
    };
    if (km.opt.argv0)
        km.opt.payload_argv[0] = (char *)km.opt.argv0;
    if (km_load_target(&km, &target, &img, false, &why) != 0) {
        /* The loader reads the header anyway: an ET_CORE file is a snapshot to resume. */
        if (why.snapshot && km.opt.payload_argc > 1)
            usage_error("%s: a snapshot takes no payload arguments", km.opt.payload);
        if (why.snapshot)
            return resume(&km);
        km_err(&km, "%s", why.msg);
        return refusal_status(&why);
    }
    km.brk = km.brk_start = km_page_up(img.end);
    if ((rsp = km_build_stack(&km, &img, &target, payload_env(&km.opt))) == 0)
        return KM_EXIT_NOEXEC;
    km_build_guest_tables(&km);
    if ((rc = km_vm_create(&km, &img, rsp)) != 0)
        return rc;
    hide_private_fds(&km);
    if ((rc = km_mgt_start(&km)) != 0)
        return rc;
    return km_vm_run(&km);
}
