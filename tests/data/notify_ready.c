/* sd_notify's READY=1 from inside a container, then exit at once: what
   `systemd-notify --ready` does. Built static by tests/test_libcrun_fixes.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

int main(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd;

    if (path == NULL || strlen(path) >= sizeof(addr.sun_path)) {
        fputs("notify_ready: NOTIFY_SOCKET unset or too long\n", stderr);
        return 2;
    }
    strcpy(addr.sun_path, path);
    if (addr.sun_path[0] == '@')
        addr.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || sendto(fd, "READY=1", 7, 0, (struct sockaddr *) &addr, sizeof(addr)) != 7) {
        perror("notify_ready");
        return 1;
    }
    return 0;
}
