/* krun-init: pid 1 of a Kontain container, in front of KM.

   Why: when a payload dies of a signal, KM re-raises that signal on itself to die the
   same way.  As the first process of a pid namespace the signal is ignored, so KM
   waits 2 s and aborts, and the container reports 139 after 2 s instead of the
   payload's 132 or 143.  With krun-init as pid 1, KM is pid 2, its re-raise works, and
   krun-init exits as KM did (128 + N for a signal death, like a shell or tini).

   It forwards every signal it can catch to KM, reaps every child, and runs KM only if
   the file it opens for it is the one krun verified on the host: the same device and
   inode, on a read-only mount (krun's bind mount of the host KM).  That open file is
   what it executes (fexecve), so a container that moved its directories around cannot
   have krun-init run anything else.  krun executes krun-init itself from a verified
   descriptor too: nothing here is ever looked up in the image.

   usage: krun-init --km=DEV:INO [--report=FILE --report-where=TEXT] -- KM [ARGS...]
     --report  on a failure of KM, write its argv, environment and status to FILE and
               print where the debug artefacts are (TEXT) on stderr.  */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void
die (int status, const char *what, const char *detail)
{
  fprintf (stderr, "krun-init: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit (status);
}

static int
open_verified (const char *path, unsigned long long dev, unsigned long long ino)
{
  struct stat st;
  struct statvfs vfs;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd < 0)
    die (127, path, strerror (errno));
  if (fstat (fd, &st) < 0 || fstatvfs (fd, &vfs) < 0)
    die (126, path, strerror (errno));
  if ((unsigned long long) st.st_dev != dev || (unsigned long long) st.st_ino != ino
      || ! (vfs.f_flag & ST_RDONLY))
    die (126, path, "not the host KM krun verified: refused");
  return fd;
}

static void
describe (int status, char *buf, size_t len)
{
  if (WIFSIGNALED (status))
    snprintf (buf, len, "killed by signal %d (%s)", WTERMSIG (status), strsignal (WTERMSIG (status)));
  else
    snprintf (buf, len, "exit status %d", WEXITSTATUS (status));
}

static void
report (const char *file, const char *where, char **argv, int status)
{
  char what[128];
  FILE *f;

  describe (status, what, sizeof what);
  f = fopen (file, "w");
  if (f != NULL)
    {
      fprintf (f, "status: %s\nargv:", what);
      for (char **a = argv; *a; a++)
        fprintf (f, " %s", *a);
      fprintf (f, "\nenv:\n");
      for (char **e = environ; *e; e++)
        fprintf (f, "  %s\n", *e);
      fclose (f);
    }
  fprintf (stderr, "krun-init: the payload failed (%s); KM's log, core and a report are in %s\n",
           what, where);
}

int
main (int argc, char **argv)
{
  unsigned long long dev = 0, ino = 0;
  const char *report_file = NULL, *report_where = NULL;
  sigset_t all, old;
  int i, km_fd, status = 0;
  pid_t km;

  for (i = 1; i < argc && strcmp (argv[i], "--") != 0; i++)
    {
      if (strncmp (argv[i], "--km=", 5) == 0)
        {
          if (sscanf (argv[i] + 5, "%llu:%llu", &dev, &ino) != 2)
            die (2, "bad --km", argv[i]);
        }
      else if (strncmp (argv[i], "--report=", 9) == 0)
        report_file = argv[i] + 9;
      else if (strncmp (argv[i], "--report-where=", 15) == 0)
        report_where = argv[i] + 15;
      else
        die (2, "unknown option", argv[i]);
    }
  if (i + 1 >= argc || ino == 0)
    die (2, "usage", "krun-init --km=DEV:INO [--report=FILE --report-where=TEXT] -- KM [ARGS...]");
  argv += i + 1;
  km_fd = open_verified (argv[0], dev, ino);

  /* Signals are taken synchronously: none is lost between fork and the wait loop.  */
  sigfillset (&all);
  sigprocmask (SIG_SETMASK, &all, &old);
  km = fork ();
  if (km < 0)
    die (1, "fork", strerror (errno));
  if (km == 0)
    {
      sigprocmask (SIG_SETMASK, &old, NULL);
      fexecve (km_fd, argv, environ);
      die (126, argv[0], strerror (errno));
    }
  close (km_fd);

  for (;;)
    {
      siginfo_t si;
      int sig = sigwaitinfo (&all, &si);

      if (sig < 0)
        continue;
      if (sig != SIGCHLD)
        {
          kill (km, sig);
          continue;
        }
      for (;;)
        {
          int st;
          pid_t pid = waitpid (-1, &st, WNOHANG);

          if (pid <= 0)
            break;
          if (pid != km)
            continue;
          if (report_file && (WIFSIGNALED (st) || WEXITSTATUS (st) != 0))
            report (report_file, report_where ? report_where : report_file, argv, st);
          status = WIFSIGNALED (st) ? 128 + WTERMSIG (st) : WEXITSTATUS (st);
          /* As pid 1, exiting takes the rest of the container with it.  */
          return status;
        }
    }
}
