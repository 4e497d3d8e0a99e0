/* Signal descriptions (glibc's wording). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

static const char *const signal_names[NSIG] = {
    [SIGHUP] = "Hangup", [SIGINT] = "Interrupt", [SIGQUIT] = "Quit",
    [SIGILL] = "Illegal instruction", [SIGTRAP] = "Trace/breakpoint trap",
    [SIGABRT] = "Aborted", [SIGBUS] = "Bus error", [SIGFPE] = "Floating point exception",
    [SIGKILL] = "Killed", [SIGUSR1] = "User defined signal 1",
    [SIGSEGV] = "Segmentation fault", [SIGUSR2] = "User defined signal 2",
    [SIGPIPE] = "Broken pipe", [SIGALRM] = "Alarm clock", [SIGTERM] = "Terminated",
    [SIGSTKFLT] = "Stack fault", [SIGCHLD] = "Child exited", [SIGCONT] = "Continued",
    [SIGSTOP] = "Stopped (signal)", [SIGTSTP] = "Stopped", [SIGTTIN] = "Stopped (tty input)",
    [SIGTTOU] = "Stopped (tty output)", [SIGURG] = "Urgent I/O condition",
    [SIGXCPU] = "CPU time limit exceeded", [SIGXFSZ] = "File size limit exceeded",
    [SIGVTALRM] = "Virtual timer expired", [SIGPROF] = "Profiling timer expired",
    [SIGWINCH] = "Window changed", [SIGIO] = "I/O possible", [SIGPWR] = "Power failure",
    [SIGSYS] = "Bad system call",
};

char *strsignal(int sig)
{
    static char buf[32];

    if (sig > 0 && sig < NSIG && signal_names[sig])
        return (char *)signal_names[sig];
    if (sig >= SIGRTMIN && sig <= SIGRTMAX)
        snprintf(buf, sizeof(buf), "Real-time signal %d", sig - SIGRTMIN);
    else
        snprintf(buf, sizeof(buf), "Unknown signal %d", sig);
    return buf;
}

void psignal(int sig, const char *s)
{
    if (s && *s)
        fprintf(stderr, "%s: %s\n", s, strsignal(sig));
    else
        fprintf(stderr, "%s\n", strsignal(sig));
}
