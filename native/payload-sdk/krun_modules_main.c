/*
 * The core krun links when `--modules DIR` comes without sources of your own: it
 * validates every module before any runs (a module that cannot run stops the payload
 * before another has done anything), then runs them.
 *
 *     app.km              run every module in order; the first failure's status
 *     app.km NAME ARGS    run module NAME with ARGS (argv[0] is NAME)
 *     app.km --list       the modules' names
 */
#include <stdio.h>
#include <string.h>

#include <krun_module.h>

int main(int argc, char **argv)
{
    for (int i = 0; i < krun_modules_count; i++) {
        const struct krun_module *m = krun_modules[i];
        int rc = m->validate ? m->validate() : 0;
        if (rc != 0) {
            fprintf(stderr, "module %s: not valid (%d)\n", m->name, rc);
            return rc;
        }
    }
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < krun_modules_count; i++)
            puts(krun_modules[i]->name);
        return 0;
    }
    if (argc > 1) {
        for (int i = 0; i < krun_modules_count; i++)
            if (strcmp(krun_modules[i]->name, argv[1]) == 0)
                return krun_modules[i]->run(argc - 1, argv + 1);
        fprintf(stderr, "no module %s (--list names them)\n", argv[1]);
        return 2;
    }
    for (int i = 0; i < krun_modules_count; i++) {
        int rc = krun_modules[i]->run(argc, argv);
        if (rc != 0)
            return rc;
    }
    return 0;
}
