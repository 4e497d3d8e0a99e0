/*
 * Arguments and environment: prints argv one per line, then the values of
 * the variables named by KRUNC_SHOW (comma-separated), then exercises
 * setenv/unsetenv/putenv/clearenv. "exec PATH ARGS..." and "execvp NAME
 * ARGS..." first set KRUNC_SHOW=KRUNC_EXEC, KRUNC_EXEC=passed, then replace
 * the program (KM re-executes itself for the new payload).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

#include "check.h"

static int count_env(void)
{
    int n = 0;
    while (environ[n])
        n++;
    return n;
}

int main(int argc, char **argv, char **envp)
{
    if (argc > 2 && (strcmp(argv[1], "exec") == 0 || strcmp(argv[1], "execvp") == 0)) {
        setenv("KRUNC_SHOW", "KRUNC_EXEC", 1);
        setenv("KRUNC_EXEC", "passed", 1);
        if (argv[1][4])
            execvp(argv[2], argv + 2);
        else
            execv(argv[2], argv + 2);
        perror("exec");
        return 127;
    }
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    CHECK(argv[argc] == NULL);
    CHECK(envp == environ);

    const char *show = getenv("KRUNC_SHOW");
    if (show) {
        char *list = strdup(show), *save = NULL;
        for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
            const char *v = getenv(name);
            printf("env %s=%s\n", name, v ? v : "(unset)");
        }
        free(list);
    }

    int before = count_env();
    CHECK(getenv("KRUNC_NEW") == NULL);
    CHECK(setenv("KRUNC_NEW", "one", 0) == 0 && strcmp(getenv("KRUNC_NEW"), "one") == 0);
    CHECK(setenv("KRUNC_NEW", "two", 0) == 0 && strcmp(getenv("KRUNC_NEW"), "one") == 0);
    CHECK(setenv("KRUNC_NEW", "three", 1) == 0 && strcmp(getenv("KRUNC_NEW"), "three") == 0);
    CHECK(count_env() == before + 1);
    CHECK(setenv("BAD=NAME", "x", 1) < 0 && errno == EINVAL);
    CHECK(setenv("", "x", 1) < 0 && errno == EINVAL);
    static char kv[] = "KRUNC_PUT=direct";
    CHECK(putenv(kv) == 0 && getenv("KRUNC_PUT") == kv + 10);
    kv[10] = 'D';       /* putenv keeps the string itself */
    CHECK(strcmp(getenv("KRUNC_PUT"), "Direct") == 0);
    for (int i = 0; i < 40; i++) {      /* growth of the copied array */
        char name[32];
        snprintf(name, sizeof(name), "KRUNC_MANY_%d", i);
        setenv(name, name, 1);
    }
    CHECK(strcmp(getenv("KRUNC_MANY_0"), "KRUNC_MANY_0") == 0 &&
          strcmp(getenv("KRUNC_MANY_39"), "KRUNC_MANY_39") == 0);
    CHECK(count_env() == before + 42);
    CHECK(unsetenv("KRUNC_NEW") == 0 && getenv("KRUNC_NEW") == NULL);
    CHECK(unsetenv("KRUNC_NEVER_SET") == 0);
    CHECK(count_env() == before + 41);
    CHECK(getenv("KRUNC_NE") == NULL);      /* a prefix is not a match */
    CHECK(clearenv() == 0 && environ[0] == NULL && getenv("KRUNC_PUT") == NULL);
    CHECK(setenv("AFTER", "clear", 1) == 0 && count_env() == 1);
    return checks_done();
}
