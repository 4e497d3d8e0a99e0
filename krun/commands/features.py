"""`krun features`: the runtime-spec `features` document, describing what krun
(libcrun 1.8.1 in-process, plus krun's handlers) really supports."""

from __future__ import annotations

import sys

from krun import OCI_VERSION, __version__
from krun import fastjson as json
from krun.runtime.bundle import CAPABILITIES, _last_cap
from krun.runtime.handlers import features as handler_features

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import SimpleNamespace

# From libcrun 1.8.1: the mount options it understands (linux.c), its seccomp support
# (libseccomp 2.5 on Debian 12) and its hooks.
MOUNT_OPTIONS = [
    "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion",
    "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec", "noiversion",
    "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "nosymfollow", "private",
    "rbind", "relatime", "remount", "ro", "rprivate", "rro", "rrw", "rshared", "rslave",
    "runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid", "symfollow",
    "sync", "tmpcopyup", "unbindable", "idmap",
]
SECCOMP_ACTIONS = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                   "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE",
                   "SCMP_ACT_TRAP"]
SECCOMP_OPERATORS = ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                     "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"]
SECCOMP_ARCHS = ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
                 "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
                 "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
                 "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
                 "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"]


def features() -> dict:
    annotations = {"org.krun.version": __version__, "org.krun.libcrun.version": "1.8.1",
                   # A KM snapshot, for Kontain containers only: no CRIU in this build.
                   "org.krun.checkpoint.enabled": "kontain-only",
                   "org.krun.checkpoint.criu": "false"}
    annotations.update(handler_features())
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": sorted(MOUNT_OPTIONS),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": ["CAP_" + c for c in CAPABILITIES[: _last_cap() + 1]],
            "cgroup": {"v1": True, "v2": True, "systemd": True, "systemdUser": True,
                       "rdma": False},
            "seccomp": {"enabled": True, "actions": SECCOMP_ACTIONS,
                        "operators": SECCOMP_OPERATORS, "archs": SECCOMP_ARCHS},
            "apparmor": {"enabled": True},
            "selinux": {"enabled": True},
            "intelRdt": {"enabled": False},
        },
        "annotations": annotations,
    }


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    sys.stdout.write(json.dumps(features(), indent=2) + "\n")
    return 0
