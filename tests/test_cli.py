"""The command line: both parsers, help, version, features and the unsupported commands."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from conftest import BundleFactory, Krun

from krun import cli, cli_click

ARGVS = [
    ["create", "--bundle", "/b", "--pid-file", "/p", "--console-socket", "/s", "id"],
    ["create", "--bundle=/b", "--pid-file=/p", "--preserve-fds", "2", "--no-pivot", "id"],
    ["--root", "/r", "--log", "/l", "--log-format", "json", "create", "-b", "/b", "id"],
    ["--root=/r", "--log=/l", "--log-format=json", "--debug", "start", "id"],
    ["--systemd-cgroup", "run", "-d", "--bundle", "/b", "id"],
    ["kill", "id", "KILL"], ["kill", "--all", "id", "9"], ["kill", "-a", "id"],
    ["delete", "--force", "id"], ["delete", "-f", "id"], ["delete", "id"],
    ["exec", "--process", "/p.json", "--detach", "--pid-file", "/p", "id"],
    ["exec", "-t", "--cwd", "/tmp", "-e", "A=1", "--env=B=2", "-u", "1:2", "id", "sh", "-c", "x"],
    ["exec", "id", "ls", "--help", "-l"],
    ["list", "--format", "json"], ["list", "-q"], ["ps", "--format=json", "id"],
    ["pause", "id"], ["resume", "id"], ["update", "--resources", "-", "id"],
    ["update", "--resources=/f", "--memory", "1000", "id"], ["spec", "--rootless", "-b", "/b"],
    ["features"], ["state", "id"], ["--kontain=always", "state", "id"],
    ["check"], ["check", "--format", "json"], ["check", "-f", "text"],
    ["--root", "/r", "check", "--format=json"],
    ["--cgroup-manager", "disabled", "run", "-d", "id"], ["--rootless=true", "list"],
    ["run", "--keep", "-f", "other.json", "id"], ["delete", "-r", "^web"],
    ["kill", "--regex", "a.*", "0"], ["ps", "id", "-e", "-x"], ["ps", "-f", "json", "id"],
    ["exec", "--cgroup", "sub", "--ignore-paused", "id", "true"],
    ["update", "--cpu-share", "5", "--memory", "50M", "id"], ["events", "--stats", "id"],
    ["events", "--interval", "200ms", "id"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=[" ".join(a) for a in ARGVS])
def test_fast_parser_agrees_with_click(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fast_g, fast_cmd, fast_opts = cli.parse(argv)
    seen: list[tuple[SimpleNamespace, cli.Cmd, SimpleNamespace]] = []

    def capture(g: SimpleNamespace, cmd: cli.Cmd, opts: SimpleNamespace) -> int:
        seen.append((g, cmd, opts))
        return 0

    monkeypatch.setattr(cli_click, "dispatch", capture)
    assert cli_click.run_click(argv) == 0
    (click_g, click_cmd, click_opts), = seen
    assert vars(fast_g) == vars(click_g)
    assert fast_cmd.name == click_cmd.name
    assert vars(fast_opts) == vars(click_opts)


def test_bundled_short_flags_fall_back_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(cli.NeedClick):
        cli.parse(["exec", "-dt", "id", "sh"])


def test_help_and_usage_errors(krun: Krun) -> None:
    proc = krun("--help", root=False)
    assert proc.returncode == 0
    for name in ("create", "start", "state", "kill", "delete", "exec", "list", "ps", "update",
                 "features", "spec"):
        assert name in proc.stdout
    proc = krun("create", "--help", root=False)
    assert proc.returncode == 0 and "--bundle" in proc.stdout and "--pid-file" in proc.stdout
    proc = krun("frobnicate", root=False, check=False)
    assert proc.returncode == 2 and "No such command" in proc.stderr
    proc = krun("create", "--no-such-flag", "x", check=False)
    assert proc.returncode == 2 and "no-such-flag" in proc.stderr
    proc = krun("--log-format", "xml", "state", "x", check=False)
    assert proc.returncode == 2 and "xml" in proc.stderr
    proc = krun("create", check=False)
    assert proc.returncode == 2 and "Missing argument" in proc.stderr


def test_version(krun: Krun) -> None:
    for flag in ("--version", "-v"):
        proc = krun(flag, root=False)
        assert proc.stdout.startswith("krun version ") and "spec: 1.0.2" in proc.stdout


def test_checkpoint_help_lists_runcs_flags(krun: Krun) -> None:
    # podman runs `checkpoint --help` to learn whether the runtime can checkpoint.
    for command, flags in (("checkpoint", ["--image-path", "--work-path", "--leave-running",
                                           "--tcp-established", "--file-locks",
                                           "--manage-cgroups-mode"]),
                           ("restore", ["--image-path", "--bundle", "--detach", "--pid-file",
                                        "--console-socket", "--tcp-established"])):
        proc = krun(command, "--help", check=False)
        assert proc.returncode == 0, proc.stderr
        for flag in flags:
            assert flag in proc.stdout, (command, flag)


def test_checkpoint_of_a_plain_container_says_criu_is_missing(krun: Krun, bundle: BundleFactory,
                                                             cid: str) -> None:
    b = bundle(["sleep", "100"])
    krun("run", "-d", "--bundle", str(b), cid)
    try:
        proc = krun("checkpoint", "--image-path", str(b / "cp"), cid, check=False)
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines() == [
            f'krun: cannot checkpoint container "{cid}": it does not run under KM, and '
            "checkpointing other containers needs CRIU, which this build lacks"]
        assert krun.status(cid) == "running"
        proc = krun("checkpoint", "--pre-dump", cid, check=False)
        assert proc.returncode == 1 and "not supported for KM snapshots" in proc.stderr
    finally:
        krun("delete", "--force", cid)
    proc = krun("checkpoint", "nosuch", check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_features_is_honest_json(krun: Krun) -> None:
    features = json.loads(krun("features", root=False).stdout)
    assert features["ociVersionMin"] == "1.0.0" and features["ociVersionMax"] == "1.0.2"
    assert "prestart" in features["hooks"] and "bind" in features["mountOptions"]
    linux = features["linux"]
    assert set(linux["namespaces"]) == {"cgroup", "ipc", "mount", "network", "pid", "user", "uts"}
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert len(linux["capabilities"]) == int(f.read()) + 1
    assert linux["seccomp"]["enabled"] is True
    assert features["annotations"]["org.krun.checkpoint.enabled"] == "kontain-only"
    assert features["annotations"]["org.krun.checkpoint.criu"] == "false"


def test_gos_single_dash_long_flags_are_accepted(krun: Krun) -> None:
    # runc parses flags Go's way; containerd's shim passes `restore -no-subreaper`.
    assert krun("delete", "-force", "nosuch").returncode == 0
    proc = krun("list", "-format=json")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]"
    proc = krun("delete", "-nosuch-flag", "x", check=False)
    assert proc.returncode == 2 and "no such option" in proc.stderr.lower()
