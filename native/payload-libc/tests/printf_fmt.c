/*
 * The printf table driver. Each stdin line is
 *     SIZE <tab> FORMAT <tab> TYPES [<tab> ARG]...
 * TYPES has one letter per argument: i (an integer, decimal), s (a string),
 * n (a NULL pointer), p (a pointer, decimal). The program prints
 * "RETURN <tab> RESULT" from snprintf into a SIZE-byte buffer.
 *
 * Every argument goes in as one 64-bit slot, which is what va_arg reads for
 * int, long and pointers alike on x86-64 (an int reads the low half), so
 * one call covers all the type combinations the test sends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    while ((n = getline(&line, &cap, stdin)) > 0) {
        if (line[n - 1] == '\n')
            line[n - 1] = '\0';
        char *rest = line;      /* strsep, not strtok: an empty field is a field */
        char *size_s = strsep(&rest, "\t");
        char *fmt = strsep(&rest, "\t");
        char *types = strsep(&rest, "\t");
        long a[4] = { 0, 0, 0, 0 };
        if (!size_s || !fmt || !types || strlen(types) > 4) {
            printf("bad line\n");
            return 2;
        }
        for (int i = 0; types[i]; i++) {
            char *arg = types[i] == 'n' ? NULL : strsep(&rest, "\t");
            if (types[i] == 's')
                a[i] = (long)(arg ? arg : "");
            else if (types[i] != 'n')
                a[i] = (long)strtoull(arg ? arg : "0", NULL, 10);
        }
        size_t size = strtoul(size_s, NULL, 10);
        char buf[600];
        memset(buf, '#', sizeof(buf));
        int r = snprintf(size ? buf : NULL, size, fmt, a[0], a[1], a[2], a[3]);
        /* Bytes past the terminator must be untouched. */
        if (size && size < sizeof(buf) && buf[size] != '#')
            printf("overrun\n");
        printf("%d\t%s\n", r, size ? buf : "");
    }
    free(line);
    return 0;
}
