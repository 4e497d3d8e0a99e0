/*
 * Directories in argv[1]: mkdir, files in it, readdir lists exactly them,
 * rmdir refuses a non-empty one and then removes it; chdir and getcwd.
 * Prints the sorted listing and the cwd for the test to compare.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    char top[PATH_MAX], path[PATH_MAX + 32];
    snprintf(top, sizeof(top), "%s/tree", argv[1]);
    CHECK(mkdir(top, 0755) == 0);
    CHECK(mkdir(top, 0755) < 0 && errno == EEXIST);
    struct stat st;
    CHECK(stat(top, &st) == 0 && S_ISDIR(st.st_mode));

    static const char *const names[] = { "beta.txt", "alpha", "gamma.c", "sub" };
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/%s", top, names[i]);
        if (strcmp(names[i], "sub") == 0) {
            CHECK(mkdir(path, 0700) == 0);
        } else {
            int fd = open(path, O_CREAT | O_WRONLY, 0600);
            CHECK(fd >= 0 && write(fd, names[i], strlen(names[i])) > 0 && close(fd) == 0);
        }
    }

    DIR *d = opendir(top);
    CHECK(d != NULL);
    char *seen[16];
    int n = 0, dots = 0, dirs = 0;
    struct dirent *e;
    errno = 0;
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            dots++;
            continue;
        }
        if (n < 16)
            seen[n++] = strdup(e->d_name);
        dirs += e->d_type == DT_DIR;
    }
    CHECK(errno == 0 && dots == 2 && n == 4 && dirs == 1);
    qsort(seen, (size_t)n, sizeof(seen[0]), by_name);
    printf("listing:");
    for (int i = 0; i < n; i++)
        printf(" %s", seen[i]);
    printf("\n");
    rewinddir(d);
    int again = 0;
    while ((e = readdir(d)) != NULL)
        again++;
    CHECK(again == 6);
    CHECK(closedir(d) == 0);
    CHECK(opendir(names[0]) == NULL && errno == ENOENT);

    CHECK(rmdir(top) < 0 && errno == ENOTEMPTY);
    char cwd[PATH_MAX], *heap;
    CHECK(chdir(top) == 0 && getcwd(cwd, sizeof(cwd)) == cwd);
    printf("cwd: %s\n", cwd);
    heap = getcwd(NULL, 0);
    CHECK(heap && strcmp(heap, cwd) == 0);
    free(heap);
    CHECK(getcwd(cwd, 2) == NULL && errno == ERANGE);
    CHECK(chdir("sub") == 0 && chdir("..") == 0);    /* relative to the new cwd */
    for (int i = 0; i < n; i++) {
        CHECK(remove(seen[i]) == 0);    /* files and the empty directory alike */
        free(seen[i]);
    }
    CHECK(chdir("/") == 0);
    CHECK(rmdir(top) == 0);
    CHECK(stat(top, &st) < 0 && errno == ENOENT);
    CHECK(chdir(top) < 0 && errno == ENOENT);
    return checks_done();
}
