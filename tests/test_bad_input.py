"""Bad input gets a clear one-line error, never a Python exception, and leaves nothing.

One table: each case says how to make the bad input (a config.json mutation or its raw
bytes, a file, a host config, the state root), the argv, and a substring of the one
line krun must print. For every case: a non-zero exit (2 for usage errors), exactly one
line on stderr, no `internal error`, no traceback, no click `Usage:`/`Error:` block, the
substring, and nothing left behind (state dir, krun record, cgroup, mount).

exec and update cases share one running container (module scope), so the table stays
fast; for them "nothing left behind" means the state root is unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import conftest
import pytest
from conftest import ROOTS_BASE, BundleFactory, Krun, make_config

# Special inputs, where a path must be something other than a file with content.
DEVZERO, FIFO, DIR, MISSING, SPARSE_100M = "<devzero>", "<fifo>", "<dir>", "<missing>", "<100M>"
U32_MAX, U64_MAX = (1 << 32) - 1, (1 << 64) - 1


class Case:
    def __init__(self, id: str, argv: list[str], expect: str, *,
                 mutate: Callable[[dict[str, Any]], None] | None = None,
                 config: bytes | str | Callable[[dict[str, Any]], bytes] | None = None,
                 file: bytes | str | None = None, stdin: bytes | None = None,
                 host: str | bytes | None = None, kontain: bool = False,
                 root: str | None = None, usage: bool = False,
                 outside: str = "") -> None:
        self.id, self.argv, self.expect = id, argv, expect
        self.mutate, self.config, self.file, self.stdin = mutate, config, file, stdin
        self.host, self.kontain, self.root, self.usage = host, kontain, root, usage
        # Non-empty: the fix belongs in a file this table's author does not own.
        self.outside = outside
        self.running = "{run}" in argv


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation: set config[a][b]... = value, creating objects on the way ("a.b.c")."""
    keys = path.split(".")

    def mutate(c: dict[str, Any]) -> None:
        node = c
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    keys = path.split(".")

    def mutate(c: dict[str, Any]) -> None:
        node = c
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return mutate


def _raw(edit: Callable[[str], str]) -> Callable[[dict[str, Any]], bytes]:
    """config.json as text, edited: for what a dict cannot hold (NaN, duplicate keys)."""
    import json

    return lambda c: edit(json.dumps(c)).encode()


def _append(path: str, item: Any) -> Callable[[dict[str, Any]], None]:
    keys = path.split(".")

    def mutate(c: dict[str, Any]) -> None:
        node: Any = c
        for key in keys:
            node = node[key]
        node.append(item)

    return mutate


RUN_ARGV = ["run", "--bundle", "{bundle}", "{cid}"]
_PROCESS = b'{"args": ["true"], "cwd": "/", '


def _process(extra: str) -> bytes:
    return _PROCESS + extra.encode() + b"}"


def _config_cases() -> list[Case]:
    r = RUN_ARGV
    c: list[Case] = [
        # The JSON itself
        Case("truncated", r, "line 1", config=lambda c: _dumps(c)[:100]),
        Case("brackets-100000", r, "nested too deeply (over 100 levels)", config=b"[" * 100000),
        Case("deep-but-valid", r, "nested too deeply (over 100 levels)",
             config=lambda c: _dumps(c)[:-1] + b', "x": ' + b'{"x": ' * 200 + b"1"
             + b"}" * 201),
        Case("top-array", r, "must be a JSON object", config=b"[]"),
        Case("top-number", r, "must be a JSON object", config=b"5"),
        Case("top-string", r, "must be a JSON object", config=b'"config"'),
        Case("top-null", r, "must be a JSON object", config=b"null"),
        Case("empty-file", r, "Expecting value", config=b""),
        Case("whitespace-only", r, "Expecting value", config=b" \n\t"),
        Case("nan", r, "NaN is not valid JSON",
             config=_raw(lambda t: t.replace('"uid": 0', '"uid": NaN'))),
        Case("infinity", r, "Infinity is not valid JSON",
             config=_raw(lambda t: t.replace('"uid": 0', '"uid": -Infinity'))),
        Case("huge-float", r, "out of range",
             config=_raw(lambda t: t.replace('"uid": 0', '"uid": 1e999'))),
        Case("5000-digits", r, "too many digits",
             config=_raw(lambda t: t.replace('"uid": 0', '"uid": ' + "9" * 5000))),
        Case("30-digit-uid", r, "$.process.user.uid: must be an integer from 0 to 4294967295",
             config=_raw(lambda t: t.replace('"uid": 0', '"uid": ' + "9" * 30))),
        Case("float-uid", r, "$.process.user.uid: must be an integer",
             config=_raw(lambda t: t.replace('"uid": 0', '"uid": 0.0'))),
        Case("duplicate-key", r, 'duplicate key "ociVersion"',
             config=_raw(lambda t: t.replace('"ociVersion"', '"ociVersion": "1.0.2", '
                                             '"ociVersion"', 1))),
        Case("invalid-utf8", r, "invalid UTF-8 at byte",
             config=lambda c: _dumps(c).replace(b'"true"', b'"tr\xffue"')),
        Case("bom", r, "byte order mark", config=lambda c: b"\xef\xbb\xbf" + _dumps(c)),
        Case("utf16", r, "invalid UTF-8", config=lambda c: _dumps(c).decode().encode("utf-16")),
        Case("lone-surrogate", r, "surrogate",
             config=_raw(lambda t: t.replace('"true"', '"\\ud800"'))),
        Case("control-char", r, "Invalid control character",
             config=_raw(lambda t: t.replace('"true"', '"tr\x01ue"'))),
        Case("trailing-garbage", r, "Extra data", config=lambda c: _dumps(c) + b" }"),
        Case("100MB", r, "larger than", config=SPARSE_100M),
        Case("symlink-devzero", r, "not a regular file", config=DEVZERO),
        Case("fifo", r, "not a regular file", config=FIFO),
        Case("directory", r, "is a directory", config=DIR),
        Case("missing", r, "config.json: no such file or directory", config=MISSING),
        Case("bundle-is-a-file", ["run", "--bundle", "{file}", "{cid}"], "not a directory",
             file=b"{}"),
        Case("rootfs-missing", r, "no such file or directory",
             mutate=_set("root.path", "nope")),
        # ociVersion, root
        Case("ociVersion-int", r, "$.ociVersion: must be a string", mutate=_set("ociVersion", 1)),
        Case("ociVersion-null", r, "$.ociVersion: must be a string",
             mutate=_set("ociVersion", None)),
        Case("ociVersion-missing", r, "$.ociVersion: is required", mutate=_delete("ociVersion")),
        Case("ociVersion-2", r, "$.ociVersion: '2.0.0' is not a runtime-spec 1.x",
             mutate=_set("ociVersion", "2.0.0")),
        Case("root-string", r, "$.root: must be an object", mutate=_set("root", "rootfs")),
        Case("root-missing", r, "$.root: is required", mutate=_delete("root")),
        Case("root-path-int", r, "$.root.path: must be a string", mutate=_set("root.path", 5)),
        Case("root-path-empty", r, "$.root.path: must not be empty", mutate=_set("root.path", "")),
        Case("root-path-nul", r, "$.root.path: must not contain a NUL",
             mutate=_set("root.path", "root\0fs")),
        Case("root-readonly-string", r, "$.root.readonly: must be a boolean",
             mutate=_set("root.readonly", "yes")),
        # process.*
        Case("process-array", r, "$.process: must be an object", mutate=_set("process", [])),
        Case("args-missing", r, "$.process.args: is required", mutate=_delete("process.args")),
        Case("args-empty", r, "$.process.args: must not be empty",
             mutate=_set("process.args", [])),
        Case("args-string", r, "$.process.args: must be an array",
             mutate=_set("process.args", "true")),
        Case("args-int-item", r, "$.process.args[0]: must be a string",
             mutate=_set("process.args", [1])),
        Case("args-nul", r, "$.process.args[0]: must not contain a NUL",
             mutate=_set("process.args", ["tr\0ue"])),
        Case("terminal-string", r, "$.process.terminal: must be a boolean",
             mutate=_set("process.terminal", "no")),
        Case("cwd-int", r, "$.process.cwd: must be a string", mutate=_set("process.cwd", 5)),
        Case("cwd-relative", r, "$.process.cwd: 'tmp' must be an absolute path",
             mutate=_set("process.cwd", "tmp")),
        Case("cwd-missing", r, "$.process.cwd: is required", mutate=_delete("process.cwd")),
        Case("env-string", r, "$.process.env: must be an array",
             mutate=_set("process.env", "A=B")),
        Case("env-int-item", r, "$.process.env[0]: must be a string",
             mutate=_set("process.env", [5])),
        Case("env-no-equals", r, "$.process.env[2]: invalid environment variable 'NOEQ': "
             "missing '='", mutate=_append("process.env", "NOEQ")),
        Case("env-empty-name", r, "name cannot be empty", mutate=_append("process.env", "=x")),
        Case("user-int", r, "$.process.user: must be an object", mutate=_set("process.user", 5)),
        Case("uid-string", r, "config.json: $.process.user.uid: must be an integer",
             mutate=_set("process.user", {"uid": "root"})),
        Case("uid-negative", r, "$.process.user.uid: must be an integer from 0 to 4294967295",
             mutate=_set("process.user.uid", -1)),
        Case("uid-2^32", r, "$.process.user.uid: must be an integer from 0",
             mutate=_set("process.user.uid", U32_MAX + 1)),
        Case("uid-bool", r, "$.process.user.uid: must be an integer",
             mutate=_set("process.user.uid", True)),
        Case("gid-float", r, "$.process.user.gid: must be an integer",
             mutate=_set("process.user.gid", 1.5)),
        Case("umask-string", r, "$.process.user.umask: must be an integer",
             mutate=_set("process.user.umask", "022")),
        Case("additionalGids-string-item", r, "$.process.user.additionalGids[0]: must be an "
             "integer", mutate=_set("process.user.additionalGids", ["wheel"])),
        Case("additionalGids-2^32", r, "$.process.user.additionalGids[1]: must be an integer "
             "from 0", mutate=_set("process.user.additionalGids", [1, U32_MAX + 1])),
        Case("capabilities-array", r, "$.process.capabilities: must be an object",
             mutate=_set("process.capabilities", [])),
        Case("bounding-string", r, "$.process.capabilities.bounding: must be an array",
             mutate=_set("process.capabilities.bounding", "CAP_KILL")),
        Case("bounding-int", r, "$.process.capabilities.bounding[0]: must be a string",
             mutate=_set("process.capabilities.bounding", [5])),
        Case("bounding-unknown", r, "unknown capability 'CAP_TEST'",
             mutate=_append("process.capabilities.bounding", "CAP_TEST")),
        Case("rlimits-object", r, "$.process.rlimits: must be an array",
             mutate=_set("process.rlimits", {})),
        Case("rlimit-type-int", r, "$.process.rlimits[0].type: must be a string",
             mutate=_set("process.rlimits", [{"type": 5, "soft": 1, "hard": 1}])),
        Case("rlimit-soft-negative", r, "$.process.rlimits[0].soft: must be an integer from 0",
             mutate=_set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": -1,
                                              "hard": 1}])),
        Case("noNewPrivileges-int", r, "$.process.noNewPrivileges: must be a boolean",
             mutate=_set("process.noNewPrivileges", 1)),
        Case("oomScoreAdj-string", r, "$.process.oomScoreAdj: must be an integer",
             mutate=_set("process.oomScoreAdj", "-500")),
        Case("consoleSize-negative", r, "$.process.consoleSize.height: must be an integer from",
             mutate=_set("process.consoleSize", {"height": -1, "width": 80})),
        Case("apparmorProfile-int", r, "$.process.apparmorProfile: must be a string",
             mutate=_set("process.apparmorProfile", 5)),
        # mounts[*]
        Case("mounts-object", r, "$.mounts: must be an array", mutate=_set("mounts", {})),
        Case("mount-int", r, "$.mounts[7]: must be an object", mutate=_append("mounts", 5)),
        Case("mount-no-destination", r, "$.mounts[7].destination: is required",
             mutate=_append("mounts", {"source": "/tmp", "type": "bind"})),
        Case("mount-destination-int", r, "$.mounts[7].destination: must be a string",
             mutate=_append("mounts", {"destination": 5})),
        Case("mount-options-string", r, "$.mounts[7].options: must be an array",
             mutate=_append("mounts", {"destination": "/x", "options": "ro"})),
        Case("mount-destination-nul", r, "$.mounts[7].destination: must not contain a NUL",
             mutate=_append("mounts", {"destination": "/x\0y"})),
        # hooks.*[*]
        Case("hooks-array", r, "$.hooks: must be an object", mutate=_set("hooks", [])),
        Case("hooks-prestart-object", r, "$.hooks.prestart: must be an array",
             mutate=_set("hooks", {"prestart": {}})),
        Case("hooks-poststart-null", r, "$.hooks.poststart: must be an array",
             mutate=_set("hooks", {"poststart": None})),
        Case("hook-int", r, "$.hooks.createRuntime[0]: must be an object",
             mutate=_set("hooks", {"createRuntime": [5]})),
        Case("hook-no-path", r, "$.hooks.poststart[0].path: is required",
             mutate=_set("hooks", {"poststart": [{"args": ["x"]}]})),
        Case("hook-path-int", r, "$.hooks.poststop[0].path: must be a string",
             mutate=_set("hooks", {"poststop": [{"path": 5}]})),
        Case("hook-timeout-zero", r, "$.hooks.prestart[0].timeout: must be an integer from 1",
             mutate=_set("hooks", {"prestart": [{"path": "/bin/true", "timeout": 0}]})),
        Case("hook-args-string", r, "$.hooks.startContainer[0].args: must be an array",
             mutate=_set("hooks", {"startContainer": [{"path": "/bin/true", "args": "x"}]})),
        # annotations
        Case("annotations-array", r, "$.annotations: must be an object",
             mutate=_set("annotations", [])),
        Case("annotation-kontain-int", r, '$.annotations["app.kontain.version"]: must be a '
             "string", mutate=_set("annotations", {"app.kontain.version": 1})),
        Case("annotation-network-int", r, '$.annotations["run.krun.network"]: must be a string',
             mutate=_set("annotations", {"run.krun.network": 5})),
        Case("annotation-publish-int", r, '$.annotations["run.krun.network.publish"]: must be '
             "a string", mutate=_set("annotations", {"run.krun.network": "bridge",
                                                      "run.krun.network.publish": 8080})),
        Case("annotation-null", r, "$.annotations.x: must be a string",
             mutate=_set("annotations", {"x": None})),
        Case("annotation-key-nul", r, "a key must not contain a NUL",
             mutate=_set("annotations", {"a\0b": "x"})),
        # linux.*
        Case("linux-array", r, "$.linux: must be an object", mutate=_set("linux", [])),
        Case("namespaces-object", r, "$.linux.namespaces: must be an array",
             mutate=_set("linux.namespaces", {})),
        Case("namespace-int", r, "$.linux.namespaces[5]: must be an object",
             mutate=_append("linux.namespaces", 5)),
        Case("namespace-no-type", r, "$.linux.namespaces[5].type: is required",
             mutate=_append("linux.namespaces", {"path": "/proc/1/ns/net"})),
        Case("namespace-type-int", r, "$.linux.namespaces[5].type: must be a string",
             mutate=_append("linux.namespaces", {"type": 5})),
        Case("cgroupsPath-int", r, "$.linux.cgroupsPath: must be a string",
             mutate=_set("linux.cgroupsPath", 5)),
        Case("cgroupsPath-array", r, "$.linux.cgroupsPath: must be a string",
             mutate=_set("linux.cgroupsPath", ["a"])),
        Case("devices-object", r, "$.linux.devices: must be an array",
             mutate=_set("linux.devices", {})),
        Case("device-major-string", r, "$.linux.devices[0].major: must be an integer",
             mutate=_set("linux.devices", [{"path": "/dev/x", "type": "c", "major": "1"}])),
        Case("sysctl-int", r, '$.linux.sysctl["net.ipv4.ip_forward"]: must be a string',
             mutate=_set("linux.sysctl", {"net.ipv4.ip_forward": 1})),
        Case("uidMappings-negative", r, "$.linux.uidMappings[0].containerID: must be an integer",
             mutate=_set("linux.uidMappings", [{"containerID": -1, "hostID": 0, "size": 1}])),
        Case("hostname-int", r, "$.hostname: must be a string", mutate=_set("hostname", 5)),
        Case("hostname-without-uts", r, "$.hostname: unable to set hostname without a private "
             "UTS namespace", mutate=lambda c: c["linux"].update(namespaces=[
                 n for n in c["linux"]["namespaces"] if n["type"] != "uts"])),
        Case("domainname-without-uts", r, "$.domainname: unable to set domainname without",
             mutate=lambda c: (c.update(domainname="example.org"), c.pop("hostname"),
                               c["linux"].update(namespaces=[{"type": "mount"}]))),
        # Signals are parsed before the container is looked up.
        Case("signal-unknown", ["kill", "{cid}", "SIGFOO"], "unknown signal 'SIGFOO'"),
        Case("signal-too-big", ["kill", "{cid}", "99999"], "invalid signal"),
        Case("signal-rtmin-overflow", ["kill", "{cid}", "SIGRTMIN+99"], "invalid signal"),
        Case("signal-5000-digits", ["kill", "{cid}", "9" * 5000], "invalid signal",
             outside="krun/runtime/signals.py: int() of more than 4300 digits"),
        Case("signal-invalid-utf8", ["kill", "{cid}", "SIG\udcff"], "unknown signal"),
    ]
    return c


def _resources_cases() -> list[Case]:
    r = RUN_ARGV
    table: list[tuple[str, Any, str]] = [
        ("array", [], "$.linux.resources: must be an object"),
        ("memory-array", {"memory": []}, "$.linux.resources.memory: must be an object"),
        ("memory-limit-string", {"memory": {"limit": "lots"}},
         "$.linux.resources.memory.limit: must be an integer"),
        ("memory-limit-float", {"memory": {"limit": 1.5}},
         "$.linux.resources.memory.limit: must be an integer"),
        ("memory-swap-2^64", {"memory": {"swap": U64_MAX + 1}},
         "$.linux.resources.memory.swap: must be an integer from"),
        ("memory-oom-string", {"memory": {"disableOOMKiller": "yes"}},
         "$.linux.resources.memory.disableOOMKiller: must be a boolean"),
        ("cpu-array", {"cpu": []}, "$.linux.resources.cpu: must be an object"),
        ("cpu-shares-negative", {"cpu": {"shares": -1}},
         "$.linux.resources.cpu.shares: must be an integer from 0"),
        ("cpu-cpus-int", {"cpu": {"cpus": 5}}, "$.linux.resources.cpu.cpus: must be a string"),
        ("pids-limit-string", {"pids": {"limit": "max"}},
         "$.linux.resources.pids.limit: must be an integer"),
        ("blockio-weight-70000", {"blockIO": {"weight": 70000}},
         "$.linux.resources.blockIO.weight: must be an integer from 0 to 65535"),
        ("blockio-weightDevice-object", {"blockIO": {"weightDevice": {}}},
         "$.linux.resources.blockIO.weightDevice: must be an array"),
        ("blockio-throttle-rate", {"blockIO": {"throttleReadBpsDevice": [
            {"major": 8, "minor": 0, "rate": -1}]}},
         "$.linux.resources.blockIO.throttleReadBpsDevice[0].rate: must be an integer from 0"),
        ("hugepage-object", {"hugepageLimits": {}},
         "$.linux.resources.hugepageLimits: must be an array"),
        ("hugepage-no-pagesize", {"hugepageLimits": [{"limit": 1}]},
         "$.linux.resources.hugepageLimits[0].pageSize: is required"),
        ("network-classid", {"network": {"classID": -1}},
         "$.linux.resources.network.classID: must be an integer from 0"),
        ("network-priority-string", {"network": {"priorities": [{"name": "eth0",
                                                                   "priority": "x"}]}},
         "$.linux.resources.network.priorities[0].priority: must be an integer"),
        ("rdma-int", {"rdma": {"mlx5_0": 5}}, "$.linux.resources.rdma.mlx5_0: must be an object"),
        ("unified-int", {"unified": {"memory.max": 1}},
         '$.linux.resources.unified["memory.max"]: must be a string'),
        ("devices-object", {"devices": {}}, "$.linux.resources.devices: must be an array"),
        ("device-allow-string", {"devices": [{"allow": "yes"}]},
         "$.linux.resources.devices[0].allow: must be a boolean"),
        ("device-no-allow", {"devices": [{"access": "rwm"}]},
         "$.linux.resources.devices[0].allow: is required"),
    ]
    return [Case(f"resources-{name}", r, expect, mutate=_set("linux.resources", value))
            for name, value, expect in table]


def _usage_cases() -> list[Case]:
    return [
        Case("unknown-global-option", ["--bogus", "state", "x"], "No such option '--bogus'",
             usage=True),
        Case("unknown-command", ["frobnicate"], "No such command 'frobnicate'", usage=True),
        Case("command-with-newline", ["fro\nb"], "No such command", usage=True),
        Case("missing-argument", ["create"], "krun create: Missing argument 'CONTAINER_ID'",
             usage=True),
        Case("missing-option-value", ["run", "--bundle"], "'--bundle' requires an argument",
             usage=True),
        Case("missing-root-value", ["--root"], "'--root' requires an argument", usage=True),
        Case("bad-choice", ["--log-format", "xml", "state", "x"], "'xml' is not one of",
             usage=True),
        Case("bad-kontain-choice", ["--kontain=maybe", "state", "x"], "'maybe' is not one of",
             usage=True),
        Case("bad-list-format", ["list", "--format", "yaml"], "'yaml' is not one of", usage=True),
        Case("unknown-command-option", ["create", "--no-such-flag", "x"],
             "No such option '--no-such-flag'", usage=True),
        Case("extra-argument", ["state", "a", "b"], "unexpected extra argument", usage=True),
        Case("kill-missing-argument", ["kill"], "Missing argument", usage=True),
        Case("preserve-fds-100000", ["run", "--preserve-fds", "100000", "--bundle", "{bundle}",
                                     "{cid}"], "100000 is more than", usage=True),
        Case("preserve-fds-negative", ["create", "--preserve-fds", "-1", "--bundle", "{bundle}",
                                       "{cid}"], "-1 is negative", usage=True),
        Case("preserve-fds-word", ["create", "--preserve-fds=many", "{cid}"],
             "'many' is not an integer", usage=True),
        Case("preserve-fds-plus", ["create", "--preserve-fds=+1", "{cid}"],
             "'+1' is not an integer", usage=True),
        Case("exec-preserve-fds-100000", ["exec", "--preserve-fds", "100000", "{run}", "true"],
             "100000 is more than", usage=True),
        Case("log-missing-dir", ["--log", "{missing}/log", *RUN_ARGV], "open log file"),
        Case("log-missing-dir-json", ["--log", "{missing}/log", "--log-format", "json",
                                      *RUN_ARGV], "open log file"),
        Case("id-invalid-utf8", ["run", "--bundle", "{bundle}", "krt-\udcff"],
             "invalid container id", outside="krun/runtime/ids.py: an id that is not UTF-8 "
             "reaches libcrun, which fails with `generate JSON document: invalid string`"),
        Case("root-is-a-file", ["--root", "{file}", *RUN_ARGV], "not a directory", file=b"x"),
    ]


def _exec_cases() -> list[Case]:
    e = ["exec", "--process", "{file}", "{run}"]
    return [
        Case("process-brackets-100000", e, "nested too deeply (over 100 levels)",
             file=b"[" * 100000),
        Case("process-truncated", e, "malformed process file", file=_PROCESS[:-3]),
        Case("process-array", e, "must be a JSON object", file=b"[]"),
        Case("process-uid-string", e, "$.user.uid: must be an integer",
             file=_process('"user": {"uid": "root"}')),
        Case("process-gid-2^32", e, "$.user.gid: must be an integer from 0 to 4294967295",
             file=_process(f'"user": {{"uid": 0, "gid": {U32_MAX + 1}}}')),
        Case("process-env-no-equals", e, "$.env[0]: invalid environment variable 'NOEQ'",
             file=_process('"env": ["NOEQ"]')),
        Case("process-args-empty", e, "$.args: must not be empty",
             file=b'{"args": [], "cwd": "/"}'),
        Case("process-cwd-missing", e, "$.cwd: is required", file=b'{"args": ["true"]}'),
        Case("process-cwd-relative", e, "$.cwd: 'tmp' must be an absolute path",
             file=b'{"args": ["true"], "cwd": "tmp"}'),
        Case("process-unknown-cap", e, "unknown capability 'CAP_TEST'",
             file=_process('"capabilities": {"bounding": ["CAP_TEST"]}')),
        Case("process-nan", e, "NaN is not valid JSON", file=_process('"oomScoreAdj": NaN')),
        Case("process-devzero", e, "not a regular file", file=DEVZERO),
        Case("process-fifo", e, "not a regular file", file=FIFO),
        Case("process-directory", e, "is a directory", file=DIR),
        Case("process-missing", e, "no such file or directory", file=MISSING),
        Case("process-and-command", [*e, "true"], "not both", file=b'{"args": ["true"]}'),
        Case("exec-no-command", ["exec", "{run}"], "a command is required"),
        Case("exec-user-name", ["exec", "--user", "root", "{run}", "true"], "invalid --user"),
        Case("exec-user-bad-gid", ["exec", "--user", "1:x", "{run}", "true"], "invalid --user"),
        Case("exec-user-2^32", ["exec", "--user", str(U32_MAX + 1), "{run}", "true"],
             "invalid --user"),
        Case("exec-user-negative", ["exec", "--user=-1", "{run}", "true"], "invalid --user"),
        Case("exec-env-no-equals", ["exec", "--env", "NOEQ", "{run}", "true"],
             "invalid --env 'NOEQ'"),
        Case("exec-env-empty-name", ["exec", "-e", "=x", "{run}", "true"], "invalid --env"),
        Case("exec-cwd-relative", ["exec", "--cwd", "tmp", "{run}", "true"],
             "invalid --cwd 'tmp': must be an absolute path"),
        Case("exec-gids-word", ["exec", "--additional-gids", "wheel", "{run}", "true"],
             "invalid --additional-gids 'wheel'"),
        Case("exec-gids-2^32", ["exec", "-g", str(U32_MAX + 1), "{run}", "true"],
             "invalid --additional-gids"),
        Case("exec-cap-unknown", ["exec", "--cap", "CAP_FOO", "{run}", "true"],
             "invalid --cap 'CAP_FOO'"),
        Case("exec-missing-container", ["exec", "{cid}", "true"], "does not exist"),
    ]


def _update_cases() -> list[Case]:
    u = ["update", "--resources", "{file}", "{run}"]
    return [
        Case("update-memory-limit-string", u, "resources JSON {file}: $.memory.limit: must be "
             "an integer",
             file=b'{"memory": {"limit": "lots"}}'),
        Case("update-cpu-array", u, "$.cpu: must be an object", file=b'{"cpu": []}'),
        Case("update-brackets-100000", u, "nested too deeply (over 100 levels)",
             file=b"[" * 100000),
        Case("update-top-array", u, "must be a JSON object", file=b"[1]"),
        Case("update-pids-float", u, "$.pids.limit: must be an integer",
             file=b'{"pids": {"limit": 1.5}}'),
        Case("update-memory-2^64", u, "$.memory.limit: must be an integer from",
             file=b'{"memory": {"limit": 18446744073709551616}}'),
        Case("update-blockio-weight", u, "$.blockIO.weight: must be an integer from 0 to 65535",
             file=b'{"blockIO": {"weight": 70000}}'),
        Case("update-hugepage-pagesize", u, "$.hugepageLimits[0].pageSize: is required",
             file=b'{"hugepageLimits": [{"limit": 1}]}'),
        Case("update-unified-int", u, '$.unified["memory.max"]: must be a string',
             file=b'{"unified": {"memory.max": 1}}'),
        Case("update-rdma-negative", u, "$.rdma.mlx5_0.hcaHandles: must be an integer from 0",
             file=b'{"rdma": {"mlx5_0": {"hcaHandles": -1}}}'),
        Case("update-devices-no-allow", u, "$.devices[0].allow: is required",
             file=b'{"devices": [{"access": "rwm"}]}'),
        Case("update-network-classid", u, "$.network.classID: must be an integer",
             file=b'{"network": {"classID": "x"}}'),
        Case("update-duplicate-key", u, "duplicate key",
             file=b'{"memory": {"limit": 1}, "memory": {"limit": 2}}'),
        Case("update-devzero", u, "not a regular file", file=DEVZERO),
        Case("update-fifo", u, "not a regular file", file=FIFO),
        Case("update-missing", u, "no such file or directory", file=MISSING),
        Case("update-stdin-too-big", ["update", "--resources", "-", "{run}"], "larger than",
             stdin=b" " * (2 << 20)),
        Case("update-stdin-bad-type", ["update", "-r", "-", "{run}"], "$.cpu: must be an object",
             stdin=b'{"cpu": 5}'),
        Case("update-flag-memory-word", ["update", "--memory", "lots", "{run}"],
             "invalid --memory 'lots': expected bytes or a size such as 512k"),
        Case("update-flag-memory-unit", ["update", "--memory", "5X", "{run}"],
             "invalid --memory '5X': expected bytes or a size"),
        Case("update-flag-memory-huge", ["update", "--memory", "99999999999p", "{run}"],
             "invalid --memory '99999999999p': must be an integer from"),
        Case("update-flag-rt-word", ["update", "--cpu-rt-runtime", "x", "{run}"],
             "invalid --cpu-rt-runtime 'x': expected an integer"),
        Case("update-flag-memory-underscore", ["update", "--memory", "1_000", "{run}"],
             "invalid --memory"),
        Case("update-flag-shares-negative", ["update", "--cpu-shares", "-1", "{run}"],
             "invalid --cpu-shares '-1': must be an integer from 0"),
        Case("update-flag-period-30-digits", ["update", "--cpu-period", "9" * 30, "{run}"],
             "must be an integer from 0"),
        Case("update-flag-pids-float", ["update", "--pids-limit", "1e3", "{run}"],
             "invalid --pids-limit"),
        Case("update-nothing", ["update", "{run}"], "nothing to change"),
    ]


def _host_cases() -> list[Case]:
    r = RUN_ARGV
    return [
        Case("host-km-top-level", r, "unknown key 'km'", host="km = 5\n"),
        Case("host-km-int", r, "kontain.km must be a string", host="[kontain]\nkm = 5\n"),
        Case("host-pin-empty", r, "kontain.km_sha256: '' is not a sha256",
             host='[kontain]\nkm_sha256 = ""\n', kontain=True),
        Case("host-pin-short", r, "is not a sha256 (64 hex digits)",
             host='[kontain]\nkm_sha256 = "abc"\n', kontain=True),
        Case("host-pin-not-hex", r, "is not a sha256",
             host=f'[kontain]\nkm_sha256 = "{"zz" * 32}"\n', kontain=True),
        Case("host-pin-int", r, "kontain.km_sha256 must be a string",
             host="[kontain]\nkm_sha256 = 5\n"),
        Case("host-mode-int", r, "kontain.mode must be a string", host="[kontain]\nmode = 3\n"),
        Case("host-mode-word", r, "kontain.mode: 'sometimes' is not one of",
             host='[kontain]\nmode = "sometimes"\n'),
        Case("host-kontain-not-table", r, "[kontain] must be a table", host="kontain = 5\n"),
        Case("host-kontain-array-of-tables", r, "[kontain] must be a table",
             host="[[kontain]]\nmode = 'auto'\n"),
        Case("host-network-not-table", r, "[network] must be a table", host='network = "x"\n'),
        Case("host-unknown-table", r, "unknown table [kontian]",
             host='[kontian]\nmode = "always"\n'),
        Case("host-unknown-key", r, "kontain.km_sha: unknown key",
             host=f'[kontain]\nkm_sha = "{"0" * 64}"\n'),
        Case("host-km-relative", r, "must be an absolute path", host='[kontain]\nkm = "km"\n',
             kontain=True),
        Case("host-km-nul", r, "kontain.km", host='[kontain]\nkm = "/opt/km\\u0000"\n',
             kontain=True),
        Case("host-subnet-word", ["run", "--network", "bridge", "--bundle", "{bundle}", "{cid}"],
             "network.subnet", host='[network]\nsubnet = "banana"\n'),
        Case("host-syntax", r, "Invalid value", host="garbage ==\n"),
        Case("host-deep", r, "nested too deeply", host="x = " + "[" * 3000 + "]" * 3000 + "\n"),
        Case("host-digits", r, "too many digits", host="x = " + "9" * 5000 + "\n"),
        Case("host-invalid-utf8", r, "invalid UTF-8", host=b"[kontain]\nmode = '\xff'\n"),
        Case("host-devzero", r, "not a regular file", host=DEVZERO),
        Case("host-fifo", r, "not a regular file", host=FIFO),
        Case("host-directory", r, "is a directory", host=DIR),
        Case("host-too-big", r, "larger than", host=SPARSE_100M),
    ]


def _outside_cases() -> list[Case]:
    """Bad input whose fix is in files other owners are changing."""
    return [
        Case("kontain-payload-directory", RUN_ARGV, "payload",
             mutate=lambda c: (c["process"].update(args=["/bin"]),
                               c.setdefault("annotations", {}).update(
                                   {"app.kontain.version": "1"})),
             outside="krun/kontain/payload.py: check_payload opens a directory "
                     "(IsADirectoryError)"),
        Case("state-root-full", RUN_ARGV, "no space left on device", root="<full>"),
    ]


CASES = (_config_cases() + _resources_cases() + _usage_cases() + _exec_cases()
         + _update_cases() + _host_cases() + _outside_cases())


def _dumps(config: dict[str, Any]) -> bytes:
    import json

    return json.dumps(config).encode()


def _make_path(path: Path, spec: bytes | str) -> None:
    """Make `path` the special thing `spec` names, or a file with `spec` as content."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    if spec == DEVZERO:
        path.symlink_to("/dev/zero")
    elif spec == FIFO:
        os.mkfifo(path)
    elif spec == DIR:
        path.mkdir()
    elif spec == MISSING:
        pass
    elif spec == SPARSE_100M:
        with open(path, "wb") as f:
            f.truncate(100 << 20)  # sparse: the size is what matters
    else:
        path.write_bytes(spec if isinstance(spec, bytes) else spec.encode())


def _state(root: Path) -> set[str]:
    if not root.exists():
        return set()
    names = {p.name for p in root.iterdir()}
    if (root / ".krun").is_dir():
        names |= {".krun/" + p.name for p in (root / ".krun").iterdir()}
    return names


def _leftovers(root: Path, cid: str) -> list[str]:
    found = []
    if os.path.lexists(root / cid):
        found.append(f"state dir {root / cid}")
    if os.path.lexists(root / ".krun" / f"{cid}.json"):
        found.append("krun record")
    for base in Path("/sys/fs/cgroup").iterdir():
        if (base / cid).exists():
            found.append(f"cgroup {base.name}/{cid}")
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if cid in line]
    return found


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Krun, str]]:
    """One running container for every exec and update case, in its own root."""
    ROOTS_BASE.mkdir(mode=0o700, exist_ok=True)
    root = ROOTS_BASE / f"{os.getpid()}-bad-input-running"
    conftest._session_roots.add(root)  # the session's leak check covers it too
    shutil.rmtree(root, ignore_errors=True)
    k = Krun(root)
    path = tmp_path_factory.mktemp("running")
    path.chmod(0o755)
    shutil.copytree(conftest.ROOTFS, path / "rootfs", symlinks=True)
    import json

    (path / "config.json").write_text(json.dumps(make_config(["sleep", "1000"])))
    cid = f"krt-{os.getpid()}-running"
    k("run", "--detach", "--bundle", str(path), cid)
    try:
        yield k, cid
    finally:
        k("delete", "--force", cid, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def full_root(tmp_path: Path) -> Iterator[Path]:
    """A state root on a tmpfs with no space left."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "root").mkdir()
        with open(mnt / "fill", "wb", buffering=0) as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 4096)
        yield mnt / "root"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, krun: Krun, bundle: BundleFactory, cid: str, tmp_path: Path,
                   request: pytest.FixtureRequest) -> None:
    if case.outside:
        # Kept failing on purpose until the owner of that file fixes it.
        print(f"fix outside test_bad_input's files: {case.outside}")
    k = krun
    run_id = ""
    if case.running:
        k, run_id = request.getfixturevalue("running")
    mutate = case.mutate
    if case.kontain:
        mutate = _set("annotations", {"app.kontain.version": "1"})
    needs_bundle = any("{bundle}" in a for a in case.argv)
    b = bundle(["true"], mutate=mutate) if needs_bundle else tmp_path / "no-bundle"
    if case.config is not None:
        spec = case.config
        if callable(spec):
            import json

            spec = spec(json.loads((b / "config.json").read_text()))
        _make_path(b / "config.json", spec)
    file = tmp_path / "input"
    if case.file is not None:
        _make_path(file, case.file)
    env = None
    if case.host is not None:
        host = tmp_path / "krun.toml"
        _make_path(host, case.host)
        env = {**os.environ, "KRUN_CONFIG": str(host)}
    root = k.root
    root_args: list[str] = []
    if case.root == "<full>":
        root = request.getfixturevalue("full_root")
        root_args = ["--root", str(root)]
    subs = {"{bundle}": str(b), "{cid}": cid, "{file}": str(file), "{run}": run_id,
            "{missing}": str(tmp_path / "no" / "such" / "dir")}
    argv = []
    for token in case.argv:
        for key, value in subs.items():
            token = token.replace(key, value)  # noqa: PLW2901
        argv.append(token)
    before = _state(k.root) if case.running else set()
    proc = k(*root_args, *argv, check=False, timeout=20, input=case.stdin, env=env,
             root=not root_args)
    err = proc.stderr
    print(f"CASE {case.id} | exit {proc.returncode} | {err.strip()}")  # shown with -s
    assert proc.returncode != 0, f"accepted: {argv}\nstdout: {proc.stdout}"
    if case.usage:
        assert proc.returncode == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert "internal error" not in err and "Traceback" not in err, err
    assert not re.search(r"^(Usage|Error):", err, re.M), err
    assert case.expect.replace("{file}", str(file)) in err, err
    assert _leftovers(root, cid) == []
    if case.running:
        assert _state(k.root) == before, "exec/update left something in the state root"
