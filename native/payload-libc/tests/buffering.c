/*
 * stdout's buffering: "first" goes through stdio, "MARK" straight to fd 2,
 * then "second". On a terminal stdout is line buffered, so "first" is out
 * before MARK; on a pipe it is fully buffered and both lines leave at exit.
 * With "read", a prompt without a newline, then a line from stdin: a
 * line-buffered stdout is flushed before the read.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "read") == 0) {
        char line[64];
        printf("name? ");
        if (!fgets(line, sizeof(line), stdin))
            return 1;
        printf("hello %s", line);
        return 0;
    }
    printf("first\n");
    write(2, "MARK\n", 5);
    printf("second\n");
    return 0;
}
