/*
 * <sys/stat.h>: struct stat in the x86-64 kernel's layout (144 bytes), which
 * KM's stat/fstat/lstat/newfstatat hypercalls fill.
 */
#ifndef _KRUNC_SYS_STAT_H
#define _KRUNC_SYS_STAT_H

#include <bits/krunc.h>
#include <bits/krunc_mode.h>

__KRUNC_BEGIN

struct stat {
    dev_t st_dev;
    ino_t st_ino;
    nlink_t st_nlink;
    mode_t st_mode;
    uid_t st_uid;
    gid_t st_gid;
    int __pad0;
    dev_t st_rdev;
    off_t st_size;
    blksize_t st_blksize;
    blkcnt_t st_blocks;
    struct timespec st_atim;
    struct timespec st_mtim;
    struct timespec st_ctim;
    long __unused[3];
};
#define st_atime st_atim.tv_sec
#define st_mtime st_mtim.tv_sec
#define st_ctime st_ctim.tv_sec

#define S_ISREG(m)  (((m) & S_IFMT) == S_IFREG)
#define S_ISDIR(m)  (((m) & S_IFMT) == S_IFDIR)
#define S_ISCHR(m)  (((m) & S_IFMT) == S_IFCHR)
#define S_ISBLK(m)  (((m) & S_IFMT) == S_IFBLK)
#define S_ISFIFO(m) (((m) & S_IFMT) == S_IFIFO)
#define S_ISLNK(m)  (((m) & S_IFMT) == S_IFLNK)
#define S_ISSOCK(m) (((m) & S_IFMT) == S_IFSOCK)

int stat(const char *__krunc_restrict path, struct stat *__krunc_restrict st);
int lstat(const char *__krunc_restrict path, struct stat *__krunc_restrict st);
int fstat(int fd, struct stat *st);
int fstatat(int dirfd, const char *__krunc_restrict path, struct stat *__krunc_restrict st,
            int flags);
int mkdir(const char *path, mode_t mode);
int mkdirat(int dirfd, const char *path, mode_t mode);
mode_t umask(mode_t mask);

__KRUNC_END

#endif
