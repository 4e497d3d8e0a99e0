/* A minimal container init for krun's tests, shaped like docker-init (tini):
   `mini_init -- CMD ARGS...` forks CMD, forwards signals to it, reaps, and exits as
   CMD did.  It first prints the kernel release it runs on, so a test can tell a native
   run (the host's release) from one inside the Kontain VM (".kontain.KVM"). */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t child;

static void forward (int sig) { if (child > 0) kill (child, sig); }

int
main (int argc, char **argv)
{
  struct utsname u;
  int i, status, first = 0;

  uname (&u);
  fprintf (stderr, "mini-init: release=%s\n", u.release);
  for (i = 1; i < argc; i++)
    if (strcmp (argv[i], "--") == 0) { first = i + 1; break; }
  if (first == 0 || first >= argc)
    return 2;
  signal (SIGTERM, forward);
  signal (SIGINT, forward);
  child = fork ();
  if (child == 0)
    {
      execv (argv[first], argv + first);
      _exit (127);
    }
  while (waitpid (child, &status, 0) < 0)
    ;
  return WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status);
}
