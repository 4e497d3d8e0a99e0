"""`krun payload build` and `krun payload cc`: C to .km against krun's libc for payloads,
the cache, the errors, and modules. Every payload built here runs under the host's KM."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import krun_binary

KM = "/opt/kontain/bin/km"
KVM = os.path.exists("/dev/kvm")
needs_kvm = pytest.mark.skipif(not KVM, reason="/dev/kvm is missing: payloads cannot run")

APP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include "app.h"

int main(int argc, char **argv)
{
    char *buf = malloc(64);
    if (!buf)
        return 90;
    snprintf(buf, 64, "%s-%d", GREETING, argc);
    buf = realloc(buf, 4096);
    FILE *f = fopen("/tmp/app.txt", "w");
    if (f) {
        fprintf(f, "%s\n", buf);
        fclose(f);
    }
    printf("%s %s %s\n", buf, argc > 1 ? argv[1] : "-", getenv("WHO") ? getenv("WHO") : "?");
    free(buf);
    return argc > 2 ? atoi(argv[2]) : 0;
}
"""


def payload(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "XDG_CACHE_HOME": str(cwd / "cache")} if cwd else dict(os.environ)
    environ.update(env or {})
    return subprocess.run([krun_binary(), "payload", *args], capture_output=True, text=True,
                          cwd=cwd, env=environ, timeout=120)


def km(app: Path, *args: str, env: dict[str, str] | None = None
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KM, str(app), *args], capture_output=True, text=True, timeout=30,
                          env=env or {})


@pytest.fixture
def src(tmp_path: Path) -> Path:
    (tmp_path / "app.c").write_text(APP)
    (tmp_path / "app.h").write_text('#define GREETING "hi"\n')
    return tmp_path


@needs_kvm
def test_build_runs_under_km_and_not_natively(src: Path) -> None:
    proc = payload("build", "app.c", "-o", "app.km", cwd=src)
    assert proc.returncode == 0, proc.stderr
    run = km(src / "app.km", "one", "7", env={"WHO": "kontain"})
    assert (run.returncode, run.stdout) == (7, "hi-3 one kontain\n"), run.stderr
    # Built against the hypercall ABI: run natively, the first hypercall faults.
    native = subprocess.run([str(src / "app.km")], capture_output=True, timeout=10)
    assert native.returncode == -signal.SIGSEGV


def test_cache_reuses_unchanged_and_rebuilds_changed(src: Path) -> None:
    def counts(*extra: str) -> str:
        proc = payload("build", "-v", "app.c", "-o", "app.km", *extra, cwd=src)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr.strip().splitlines()[-1]

    assert counts() == "app.km: 1 compiled, 0 from the cache"
    first = (src / "app.km").read_bytes()
    assert counts() == "app.km: 0 compiled, 1 from the cache"
    assert (src / "app.km").read_bytes() == first
    # A header the source includes, a macro, the optimisation level: each recompiles.
    (src / "app.h").write_text('#define GREETING "hello"\n')
    assert counts() == "app.km: 1 compiled, 0 from the cache"
    assert counts("-D", "EXTRA=1") == "app.km: 1 compiled, 0 from the cache"
    assert counts("-O", "1") == "app.km: 1 compiled, 0 from the cache"
    assert counts("-O", "1") == "app.km: 0 compiled, 1 from the cache"
    assert counts("--no-cache") == "app.km: 1 compiled, 0 from the cache"


@pytest.mark.parametrize("source,words", [
    ("int f(void) { return 1; }\n", "no main() function"),
    ("int frobnicate(int);\nint main(void) { return frobnicate(1); }\n",
     "undefined symbol frobnicate: not provided by the payload runtime"),
    ("double g(double x) { return x * 2.5; }\nint main(void) { return (int)g(2); }\n",
     "floating point: payloads are built without SSE"),
    ("int main(void) { return syntax error; }\n", "compiling bad.c failed"),
])
def test_build_errors_name_the_step(tmp_path: Path, source: str, words: str) -> None:
    (tmp_path / "bad.c").write_text(source)
    proc = payload("build", "bad.c", "-o", "bad.km", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("krun: payload build: ") and words in last, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "bad.km").exists()


@pytest.mark.parametrize("args,words", [
    (["build", "missing.c", "-o", "x.km"], "missing.c: no such file or directory"),
    (["build", "-o", "x.km"], "no sources"),
    (["build", "app.c"], "Missing option '-o'"),
    (["build", "app.c", "-o", "x.km", "--static-lib", "app.h"], "a static library (.a)"),
    (["cc", "-shared", "-o", "x.so", "app.c"], "-shared: a payload is a static, non-PIE"),
    (["cc", "-static-pie", "-o", "x", "app.c"], "-static-pie: a payload is a static"),
    (["frob"], "No such command 'frob'"),
    ([], "a command is needed: build, cc"),
])
def test_bad_input_is_one_line(src: Path, args: list[str], words: str) -> None:
    proc = payload(*args, cwd=src)
    assert proc.returncode in (1, 2), proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr


@needs_kvm
def test_cc_drives_a_build_system(src: Path) -> None:
    (src / "Makefile").write_text("app: app.o\n\t$(CC) -o $@ $^\n"
                                  "app.o: app.c app.h\n\t$(CC) -O2 -c -o $@ $<\n")
    proc = subprocess.run(["make", "-s", f"CC={krun_binary()} payload cc"], cwd=src,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    run = km(src / "app", "x", env={"WHO": "make"})
    assert (run.returncode, run.stdout) == (0, "hi-2 x make\n"), run.stderr


MODULE = """
#include <stdio.h>
#include <krun_module.h>
static int ok(void) {{ return {valid}; }}
static int go(int argc, char **argv) {{
    printf("{name} ran with %d args (%s)\\n", argc, argv[0]);
    return 0;
}}
KRUN_MODULE("{name}", ok, go);
"""


def _module(root: Path, directory: str, name: str | None = None, valid: int = 0,
            extra: str = "") -> None:
    d = root / directory
    d.mkdir(parents=True)
    (d / "mod.c").write_text(MODULE.format(name=name or directory, valid=valid) + extra)


@needs_kvm
def test_modules_link_into_one_payload(tmp_path: Path) -> None:
    mods = tmp_path / "mods"
    _module(mods, "alpha")
    _module(mods, "beta", extra="static int helper(void) { return 2; }\n"
            "int beta_public(void) { return helper(); }\n")
    (mods / "alpha" / "more.c").write_text("static int unused(void) { return 1; }\n"
                                           "int alpha_more(void) { return unused(); }\n")
    proc = payload("build", "--modules", "mods", "-o", "app.km", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    app = tmp_path / "app.km"
    assert km(app, "--list").stdout == "alpha\nbeta\n"
    assert km(app).stdout == f"alpha ran with 1 args ({app})\nbeta ran with 1 args ({app})\n"
    one = km(app, "beta", "x")
    assert (one.returncode, one.stdout) == (0, "beta ran with 2 args (beta)\n")
    assert km(app, "gamma").returncode == 2


@needs_kvm
def test_a_module_that_is_not_valid_stops_before_any_runs(tmp_path: Path) -> None:
    mods = tmp_path / "mods"
    _module(mods, "alpha")
    _module(mods, "beta", valid=3)
    assert payload("build", "--modules", "mods", "-o", "app.km", cwd=tmp_path).returncode == 0
    run = km(tmp_path / "app.km")
    assert (run.returncode, run.stdout) == (3, "")
    assert "module beta: not valid (3)" in run.stderr


def _module_error(tmp_path: Path) -> str:
    proc = payload("build", "--modules", "mods", "-o", "app.km", cwd=tmp_path)
    assert proc.returncode in (1, 2), proc.stderr
    assert not (tmp_path / "app.km").exists()
    return proc.stderr.strip().splitlines()[-1]


def test_module_without_the_interface(tmp_path: Path) -> None:
    _module(tmp_path / "mods", "alpha")
    (tmp_path / "mods" / "plain").mkdir()
    (tmp_path / "mods" / "plain" / "x.c").write_text("int plain_f(void) { return 1; }\n")
    assert "module plain: does not implement the module interface" in _module_error(tmp_path)


def test_modules_with_the_same_name(tmp_path: Path) -> None:
    _module(tmp_path / "mods", "alpha", name="same")
    _module(tmp_path / "mods", "beta", name="same")
    assert "modules alpha and beta are both named 'same'" in _module_error(tmp_path)


def test_modules_defining_the_same_symbol(tmp_path: Path) -> None:
    clash = "int shared_counter = 1;\n"
    _module(tmp_path / "mods", "alpha", extra=clash)
    _module(tmp_path / "mods", "beta", extra=clash)
    assert "modules alpha and beta both define shared_counter" in _module_error(tmp_path)


def test_modules_empty_and_missing(tmp_path: Path) -> None:
    (tmp_path / "mods").mkdir()
    assert "no modules in it" in _module_error(tmp_path)
    (tmp_path / "mods" / "empty").mkdir()
    assert "module empty: no .c files" in _module_error(tmp_path)
    proc = payload("build", "--modules", "nowhere", "-o", "app.km", cwd=tmp_path)
    assert "--modules nowhere: no such directory" in proc.stderr
