/* Small C helpers compiled into krun's libcrun extension module. */
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <yajl/yajl_tree.h>
#include <libcrun/container.h>
#include <libcrun/status.h>
#include <libcrun/error.h>

/* libcrun 1.8.1 can take an exec process only as a parsed struct or a file path; krun
   builds the process in memory (inline args, Kontain rewrites), so parse it here rather
   than round-trip through a temporary file. */
int
krun_exec_json (libcrun_context_t *context, const char *id, const char *process_json, libcrun_error_t *err)
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
