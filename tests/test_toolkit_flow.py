"""The toolkit end to end: a C program built with `krun payload build`, run with
`krun km` (output, exit status, an env var, a volume, stdin, bridge networking with a
published port), and packaged with `krun image build` and run from the image."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import Krun

pytestmark = [pytest.mark.kvm,
              pytest.mark.skipif(not os.path.exists("/dev/kvm"),
                                 reason="no /dev/kvm on this machine: Kontain needs KVM")]

APP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "cat") == 0) {
        char line[256];
        while (fgets(line, sizeof line, stdin))
            printf("got: %s", line);
        return 0;
    }
    const char *who = getenv("WHO");
    size_t n = 1000;
    int *squares = malloc(n * sizeof *squares);
    long sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += squares[i] = (int)(i * i);
    free(squares);
    FILE *f = fopen("/out/result.txt", "w");
    if (!f) {
        perror("fopen /out/result.txt");
        return 90;
    }
    fprintf(f, "sum=%ld who=%s\n", sum, who ? who : "?");
    fclose(f);
    printf("%s: %d args, last %s, who %s\n", argv[0], argc - 1, argv[argc - 1],
           who ? who : "?");
    return argc > 2 ? atoi(argv[2]) : 0;
}
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("flow")
    (d / "app.c").write_text(APP)
    proc = subprocess.run([Krun(d).binary, "payload", "build", str(d / "app.c"), "-o",
                           str(d / "app.km")], capture_output=True, text=True,
                          env={**os.environ, "XDG_CACHE_HOME": str(d / "cache")})
    assert proc.returncode == 0, proc.stderr
    return d / "app.km"


def test_built_payload_with_env_volume_and_bridge(krun: Krun, app: Path, tmp_path: Path,
                                                  cid: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = krun("km", "--name", cid, "-e", "WHO=flow", "-v", f"{out}:/out",
                "--network", "bridge", "-p", "18095:80", str(app), "x", "9", check=False)
    assert (proc.returncode, proc.stdout) == (9, "/app.km: 2 args, last 9, who flow\n"), \
        proc.stderr
    assert (out / "result.txt").read_text() == "sum=332833500 who=flow\n"
    assert krun("list", "-q").stdout == ""


def test_stdin_reaches_the_payload(krun: Krun, app: Path, cid: str) -> None:
    proc = krun("km", "-i", "--name", cid, str(app), "cat", input=b"one\ntwo\n",
                check=False)
    assert (proc.returncode, proc.stdout) == (0, "got: one\ngot: two\n"), proc.stderr


def test_image_of_the_payload_runs(krun: Krun, app: Path, tmp_path: Path, cid: str) -> None:
    tar = tmp_path / "app.tar"
    proc = krun("image", "build", str(app), "-t", "flow/app:1", "-o", str(tar),
                "--env", "WHO=image", "--cmd", '["from-image"]', check=False)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    out.mkdir()
    proc = krun("km", "--name", cid, "--image", str(tar), "-v", f"{out}:/out", check=False)
    assert (proc.returncode, proc.stdout) == (0, "/app.km: 1 args, last from-image, "
                                                 "who image\n"), proc.stderr
