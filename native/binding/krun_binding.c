/* Small C helpers compiled into krun's libcrun extension module. */
#include <config.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <stdio.h>
#include <yajl/yajl_tree.h>
#include <libcrun/container.h>
#include <libcrun/status.h>
#include <libcrun/error.h>

/* libcrun 1.8.1 can take an exec process only as a parsed struct or a file path; krun
   builds the process in memory (inline args, Kontain rewrites), so parse it here rather
   than round-trip through a temporary file. */
int
krun_exec_json (libcrun_context_t *context, const char *id, const char *process_json,
                const char *cgroup, libcrun_error_t *err)
{
  struct parser_context ctx = { 0, NULL };
  parser_error parser_err = NULL;
  char errbuf[256];
  struct libcrun_container_exec_options_s opts;
  runtime_spec_schema_config_schema_process *process;
  yajl_val tree;
  int ret;

  tree = yajl_tree_parse (process_json, errbuf, sizeof (errbuf));
  if (tree == NULL)
    return libcrun_make_error (err, EINVAL, "cannot parse process: %s", errbuf);

  process = make_runtime_spec_schema_config_schema_process (tree, &ctx, &parser_err);
  yajl_tree_free (tree);
  if (process == NULL)
    {
      ret = libcrun_make_error (err, EINVAL, "cannot parse process: %s", parser_err ? parser_err : "invalid");
      free (parser_err);
      return ret;
    }
  free (parser_err);

  memset (&opts, 0, sizeof (opts));
  opts.struct_size = sizeof (opts);
  opts.process = process;
  opts.cgroup = cgroup; /* exec --cgroup: a sub-cgroup of the container, or NULL */
  ret = libcrun_container_exec_with_options (context, id, &opts, err);
  free_runtime_spec_schema_config_schema_process (process);
  return ret;
}

#include <fcntl.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/openat2.h>

/* Open `path` as seen from inside `root`, by the kernel: symlinks and `..` resolve
   within root and can never lead out of it (RESOLVE_IN_ROOT), with no race against
   a running container swapping a path component for a symlink. Returns an fd or
   -errno. */
int
krun_open_in_root (const char *root, const char *path, int flags)
{
  struct open_how how;
  int dirfd, fd, saved;

  dirfd = open (root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    return -errno;
  memset (&how, 0, sizeof (how));
  how.flags = (unsigned long long) (flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  fd = (int) syscall (SYS_openat2, dirfd, path, &how, sizeof (how));
  saved = errno;
  close (dirfd);
  return fd < 0 ? -saved : fd;
}

#include <linux/mount.h>

#ifndef SYS_open_tree
#  define SYS_open_tree 428
#endif
#ifndef SYS_mount_setattr
#  define SYS_mount_setattr 442
#endif

/* A private, read-only view of one host file: a detached bind mount of `path`
   (open_tree OPEN_TREE_CLONE), made read-only, nosuid and nodev.  Returns an O_PATH
   fd on it (execveat can run it) or -errno.  A process executed from it sees its
   /proc/self/exe on a read-only mount, so even a container that reaches that link
   cannot reopen the host file for writing (CVE-2019-5736), and the mount exists only
   as long as something holds it.  Needs CAP_SYS_ADMIN: callers fall back to a sealed
   memfd copy without it. */
int
krun_open_tree_ro (const char *path)
{
  struct mount_attr attr;
  int fd, saved;

  fd = (int) syscall (SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (fd < 0)
    return -errno;
  memset (&attr, 0, sizeof (attr));
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (syscall (SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof (attr)) < 0)
    {
      saved = errno;
      close (fd);
      return -saved;
    }
  return fd;
}

#include <sys/mount.h>

/* umount2 for krun's cleanup of mounts libcrun made in the host's namespace (a config
   with no mount namespace): 0 or -errno. */
int
krun_umount (const char *target, int flags)
{
  return umount2 (target, flags) < 0 ? -errno : 0;
}

/* libcrun calls a context's output handler for two things: warnings the container's
   init sends over the sync socket, and, when a foreground container with a terminal
   exits before the wait loop copied everything, the rest of the pty's output
   (flush_fd_to_err). With no handler set, the first dereferences NULL and the second
   loses the container's last output. The output is the container's: it goes to stdout
   raw, as the wait loop copies it; warnings go through libcrun's logging, so they reach
   --log in the format it was given. */
static void
krun_output_handler (int errno_, const char *msg, bool warning, void *arg)
{
  (void) arg;
  if (! warning && errno_ == 0)
    {
      size_t len = strlen (msg);
      while (len > 0)
        {
          ssize_t n = write (1, msg, len);
          if (n < 0 && errno == EINTR)
            continue;
          if (n <= 0)
            return;
          msg += n;
          len -= n;
        }
      return;
    }
  if (errno_)
    libcrun_warning ("%s: %s", msg, strerror (errno_));
  else
    libcrun_warning ("%s", msg);
}

void
krun_use_output_handler (libcrun_context_t *context)
{
  /* output_handler_arg stays: with --log it is the log's FILE, where libcrun writes
     some warnings directly.  */
  context->output_handler = krun_output_handler;
}

/* The feature line of `krun --version`, in crun's shape: what this libcrun build was
   configured with (tools parse it; crun's own tests skip sd-notify without +SYSTEMD).
   SELinux and AppArmor need no library: libcrun writes their attributes itself. */
const char *
krun_build_features (void)
{
  return ""
#ifdef HAVE_SYSTEMD
         "+SYSTEMD "
#endif
         "+SELINUX +APPARMOR "
#ifdef HAVE_CAP
         "+CAP "
#endif
#ifdef HAVE_SECCOMP
         "+SECCOMP "
#endif
#ifdef HAVE_EBPF
         "+EBPF "
#endif
#ifdef HAVE_CRIU
         "+CRIU "
#endif
         "+YAJL";
}

/* krun leaves with _exit (no interpreter teardown), which skips C stdio's flush: the
   --log FILE libcrun opened is block-buffered unless it logs warnings, and its last
   records would be lost. */
void
krun_flush_stdio (void)
{
  fflush (NULL);
}
