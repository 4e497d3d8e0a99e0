/*
 * krun-km: runs a Kontain payload (a static x86-64 ELF that talks to the
 * monitor through port-I/O hypercalls) in a one-vCPU KVM virtual machine.
 *
 * This file: command line, messages, signals and the overall sequence.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "km.h"

extern char **environ;

static struct km km;    /* one per process; large (page bitmap), so static */

static const char usage_text[] =
    "Usage: km [options] payload[.km] [payload args...]\n"
    "Runs a Kontain payload in a KVM virtual machine. Options end at the first\n"
    "non-option argument, which is the payload path (PATH is not searched).\n"
    "\n"
    "  -v, --version           print the version and exit\n"
    "  -h, --help              print this help and exit\n"
    "      --verbose[=REGEX]   log each hypercall (only those whose name matches REGEX)\n"
    "  -k, --km-log-to=FILE    write the log to FILE (appended) instead of stderr\n"
    "      --putenv=KEY=VALUE  payload environment variable; repeatable; the given\n"
    "                          variables replace the host environment\n"
    "      --copyenv           pass the host environment through (the default;\n"
    "                          with --putenv, the given variables are added to it)\n"
    "      --virt-device=PATH  virtualization device (default: first existing of\n"
    "                          /dev/kontain, /dev/kvm, /dev/kkm)\n"
    "\n"
    "Exit status: the payload's exit code; 128+N if KM is ended by signal N or the\n"
    "guest faults (N = the signal Linux would have sent); 127 payload not found;\n"
    "126 payload unreadable or not a valid payload; 2 usage error; 1 KVM error.\n";

const char *km_strerror(int err)
{
    /* Lower-case the first letter so messages read "x: no such file ...". */
    static char buf[128];
    snprintf(buf, sizeof(buf), "%s", strerror(err));
    if (buf[0] >= 'A' && buf[0] <= 'Z')
        buf[0] = (char)(buf[0] - 'A' + 'a');
    return buf;
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (fd >= 0 && len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

/* One write per message so concurrent writers never interleave lines. */
static void vmessage(int fd, const char *fmt, va_list ap)
{
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "km: ");
    n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    if (n > (int)sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    write_all(fd, buf, (size_t)n);
}

void km_err(struct km *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(k->err_fd, fmt, ap);
    va_end(ap);
    if (k->log_fd != k->err_fd) {
        va_start(ap, fmt);
        vmessage(k->log_fd, fmt, ap);
        va_end(ap);
    }
}

void km_trace(struct km *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(k->log_fd, fmt, ap);
    va_end(ap);
}

bool km_is_private_fd(const struct km *k, int fd)
{
    return fd >= 0 &&
           (fd == k->vcpu_fd || fd == k->vm_fd || fd == k->err_fd || fd == k->log_fd);
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

static void on_terminating_signal(int sig)
{
    /*
     * Exiting tears the VM down with the process. A handler (rather than the
     * default action) is needed because as pid 1 of a container KM would
     * otherwise ignore these signals.
     */
    _exit(128 + sig);
}

static void install_signal_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_terminating_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static int setup_logging(struct km *k)
{
    if (k->opt.log_path) {
        int fd = open(k->opt.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            km_err(k, "%s: cannot open log file: %s", k->opt.log_path, km_strerror(errno));
            return KM_EXIT_SETUP;
        }
        k->log_fd = fd;
    }
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
static int hide_fd(int fd, int floor)
{
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, floor);
    if (moved < 0)
        return fd;
    close(fd);
    return moved;
}

static void hide_private_fds(struct km *k)
{
    struct rlimit rl;
    int floor = 1000;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1024)
        floor = rl.rlim_cur > 16 ? (int)rl.rlim_cur - 8 : 3;
    int log_is_err = k->log_fd == k->err_fd;
    k->err_fd = fcntl(2, F_DUPFD_CLOEXEC, floor);
    k->log_fd = log_is_err ? k->err_fd : hide_fd(k->log_fd, floor);
    k->vcpu_fd = hide_fd(k->vcpu_fd, floor);
    k->vm_fd = hide_fd(k->vm_fd, floor);
}

int main(int argc, char **argv)
{
    struct km_image img;
    uint64_t rsp;
    int rc;

    km.err_fd = km.log_fd = 2;
    km.vm_fd = km.vcpu_fd = -1;
    parse_options(&km.opt, argc, argv);
    install_signal_handlers();
    if ((rc = setup_logging(&km)) != 0)
        return rc;
    if ((rc = km_map_guest_memory(&km)) != 0)
        return rc;
    if ((rc = km_load_elf(&km, km.opt.payload, &img)) != 0)
        return rc;
    km.brk = km.brk_start = km_page_up(img.end);
    if ((rsp = km_build_stack(&km, &img, payload_env(&km.opt))) == 0)
        return KM_EXIT_NOEXEC;
    km_build_guest_tables(&km);
    if ((rc = km_vm_create(&km, &img, rsp)) != 0)
        return rc;
    hide_private_fds(&km);
    return km_vm_run(&km);
}
