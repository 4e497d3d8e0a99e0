"""`krun check`: can this host run krun's containers, and Kontain ones?

One line per check, ✔ or ✘, and for each ✘ one line saying how to fix it. Every check
only reads (devices are opened and closed again, KM is hashed, engines' files are
planned against as `krun install --dry-run` would); nothing on the host changes.

Each check has a scope: `containers` (krun cannot run any container while it fails),
`kontain` (only Kontain containers cannot run) or `advisory` (worth fixing, stops
nothing). The exit status is 0 exactly when every `containers` check passes; whether
Kontain containers can run is the summary's second half, and `kontain` in JSON.

The Kontain checks call what the Kontain handler itself calls at create (the KM and
krun-init checks of krun.kontain, the handler's device list), so `check` and `create`
cannot disagree about what is acceptable.
"""

from __future__ import annotations

import os
import sys

from krun.cli import CLONED_ENV  # libcrun's mark on a re-executed copy
from krun.errors import KrunError

TYPE_CHECKING = False  # typing itself costs ~10 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import SimpleNamespace

CONTAINERS, KONTAIN, ADVISORY = "containers", "kontain", "advisory"
OK_MARK, FAIL_MARK = "\u2714", "\u2718"

# pidfd_open (5.3) signals a container's init; openat2 (5.6) resolves Kontain payloads
# inside the rootfs.
KERNEL_MIN = (5, 3)
KERNEL_MIN_KONTAIN = (5, 6)
CGROUP_ROOT = "/sys/fs/cgroup"
HUGETLB_V1 = "/sys/fs/cgroup/hugetlb"
SUBID_FILES = ("/etc/subuid", "/etc/subgid")
ENGINE_LABELS = {"docker": "docker", "podman": "podman", "containerd": "containerd",
                 "crio": "CRI-O"}


class Check:
    __slots__ = ("detail", "fix", "name", "ok", "scope")

    def __init__(self, name: str, ok: bool, detail: str, fix: str | None = None,
                 scope: str = CONTAINERS) -> None:
        self.name, self.ok, self.scope = name, ok, scope
        self.detail = _one_line(detail)
        self.fix = None if ok else _one_line(fix or "see the detail above")

    def json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix,
                "scope": self.scope}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _passed(name: str, detail: str, scope: str = CONTAINERS) -> Check:
    return Check(name, True, detail, None, scope)


def _failed(name: str, detail: str, fix: str, scope: str = CONTAINERS) -> Check:
    return Check(name, False, detail, fix, scope)


def _errno_text(e: OSError) -> str:
    from krun.errors import strerror

    return strerror(e.errno) if e.errno else (e.strerror or "input/output error")


def _read(path: str, limit: int = 1 << 20) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(limit)
    except FileNotFoundError:
        return None


class Host:
    """What the checks learn and share: who runs krun, the host config's path, whether
    it loads and whether the binding does, and the interpreter's mount."""

    def __init__(self, g: SimpleNamespace) -> None:
        import pwd

        from krun.hostconfig import config_path

        self.g = g
        self.euid = os.geteuid()
        try:
            self.user = pwd.getpwuid(self.euid).pw_name
        except KeyError:
            self.user = str(self.euid)
        self.config = config_path()
        self.config_ok = False
        self.binding = False
        self.exe: tuple[str, bool, bool] = _interpreter()  # read before libcrun loads

    @property
    def root(self) -> bool:
        return self.euid == 0


# --- the host ---------------------------------------------------------------------------


def _kernel_version(release: str) -> tuple[int, int] | None:
    parts = release.split(".")
    if len(parts) < 2 or not parts[0].isdigit():
        return None
    digits = ""
    for c in parts[1]:
        if not c.isdigit():
            break
        digits += c
    return (int(parts[0]), int(digits)) if digits else None


def check_kernel(host: Host) -> list[Check]:
    release = os.uname().release
    version = _kernel_version(release)
    need = f"krun needs {KERNEL_MIN[0]}.{KERNEL_MIN[1]}, Kontain " \
           f"{KERNEL_MIN_KONTAIN[0]}.{KERNEL_MIN_KONTAIN[1]}"
    if version is None:
        return [_passed("kernel", f"Linux {release}: version not understood, not compared "
                        f"({need})", ADVISORY)]
    if version < KERNEL_MIN:
        return [_failed("kernel", f"Linux {release} is older than {need}",
                        "boot a newer kernel (Debian 12 ships 6.1)")]
    if version < KERNEL_MIN_KONTAIN:
        return [_failed("kernel", f"Linux {release}: Kontain needs openat2 ({need})",
                        "boot a newer kernel (Debian 12 ships 6.1)", KONTAIN)]
    return [_passed("kernel", f"Linux {release} ({need})")]


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mount point, file system type, super options) of every cgroup-related mount
    under /sys/fs/cgroup, in mount order."""
    from krun.runtime.cleanup import unescape_mountinfo

    found = []
    for line in (_read("/proc/self/mountinfo", 4 << 20) or "").splitlines():
        pre, _, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point = unescape_mountinfo(fields[4])
        if point == CGROUP_ROOT or point.startswith(CGROUP_ROOT + "/"):
            found.append((point, tail[0], tail[2]))
    return found


def _hugetlb_in_kernel() -> bool:
    for line in (_read("/proc/cgroups") or "").splitlines():
        cols = line.split()
        if len(cols) >= 4 and cols[0] == "hugetlb":
            return cols[3] == "1"
    return False


def check_cgroups(host: Host) -> list[Check]:
    scope = ADVISORY if host.g.cgroup_manager == "disabled" else CONTAINERS
    mounts = _cgroup_mounts()
    at_root = [fstype for point, fstype, _ in mounts if point == CGROUP_ROOT]
    if at_root and at_root[-1] == "cgroup2":
        return [_passed("cgroups", f"v2 (unified) at {CGROUP_ROOT}", scope)]
    v1 = [point for point, fstype, _ in mounts if fstype == "cgroup"]
    v2 = [point for point, fstype, _ in mounts if fstype == "cgroup2"]
    if not v1 and not v2:
        return [_failed("cgroups", f"no cgroup file system is mounted at {CGROUP_ROOT}",
                        f"mount -t cgroup2 cgroup2 {CGROUP_ROOT} (or run with "
                        "--cgroup-manager disabled)", scope)]
    if v1 and v2:
        layout = f"hybrid: {len(v1)} v1 hierarchies, cgroup2 at {', '.join(v2)}"
    elif v1:
        layout = f"v1: {len(v1)} hierarchies"
    else:
        layout = f"cgroup2 at {', '.join(v2)} only, no v1 hierarchy"
    # scripts/prepare-cgroups: libcrun 1.8.1 refuses to run on v1 or hybrid cgroups while
    # hugetlb is not on its own v1 hierarchy at /sys/fs/cgroup/hugetlb.
    if not _hugetlb_in_kernel():
        return [_passed("cgroups", f"{layout}; no hugetlb controller to prepare", scope)]
    if any(point == HUGETLB_V1 and fstype == "cgroup" for point, fstype, _ in mounts):
        return [_passed("cgroups", f"{layout}; hugetlb on v1 at {HUGETLB_V1} (prepared)",
                        scope)]
    return [_failed("cgroups", f"{layout}; hugetlb is not mounted as cgroup v1 at "
                    f"{HUGETLB_V1}: libcrun refuses to run until it is",
                    f"scripts/prepare-cgroups, or by hand: mkdir -p {HUGETLB_V1} && "
                    f"mount -t cgroup -o hugetlb cgroup {HUGETLB_V1}", scope)]


# --- krun itself ------------------------------------------------------------------------


def _interpreter() -> tuple[str, bool, bool]:
    """(the interpreter's path, whether it is on a read-only mount, whether libcrun has
    re-executed this process from a copy of it). Asked before the binding loads, whose
    CVE-2019-5736 guard re-executes a binary that is not on a read-only mount from a
    sealed memfd or a read-only bind mount of a temporary file, with
    _LIBCONTAINER_CLONED_BINARY=1 in the environment."""
    path = os.path.realpath(sys.executable) if sys.executable else "/proc/self/exe"
    try:
        # A copy runs from elsewhere: a memfd, or a detached bind mount of this very file
        # (which /proc/self/exe shows as "/").
        copied = CLONED_ENV in os.environ and os.readlink("/proc/self/exe") != path
        # What the guard asks: is the running binary on a read-only mount? For a copy, of
        # the file krun started from.
        readonly = bool(os.statvfs(path if copied else "/proc/self/exe").f_flag
                        & os.ST_RDONLY)
    except OSError:
        return path, False, False
    return path, readonly, copied


def check_interpreter(host: Host) -> list[Check]:
    path, readonly, copied = host.exe
    if readonly and not copied:
        return [_passed("interpreter", f"{path} is on a read-only mount: libcrun's "
                        "CVE-2019-5736 guard is the cheap one (no re-exec)", ADVISORY)]
    directory = os.path.dirname(path)
    what = "so libcrun re-executed krun from a copy" if copied else \
        "so libcrun re-executes krun from a copy"
    return [_failed("interpreter", f"{path} is on a writable mount, {what} (its "
                    "CVE-2019-5736 guard): a second interpreter start on every call",
                    f"{sys.executable} -I -m krun.installer protect (a read-only bind mount "
                    f"of {directory}; install.sh and scripts/install-krun do it)", ADVISORY)]


def check_binding(host: Host) -> list[Check]:
    try:
        from krun.runtime._libcrun import ffi, lib

        features = ffi.string(lib.krun_build_features()).decode()
    except ImportError as e:
        return [_failed("libcrun binding", f"krun.runtime._libcrun does not load: {e}",
                        "reinstall krun (the release's install.sh, or scripts/setup in a "
                        "checkout)")]
    host.binding = True
    return [_passed("libcrun binding", f"krun.runtime._libcrun loads: libcrun 1.8.1 "
                    f"in-process ({features})")]


def check_state_root(host: Host) -> list[Check]:
    root = host.g.root or "/run/krun"
    path = os.path.abspath(root)
    other = f"pass --root a directory {host.user} can write, or run as root"
    probe = path
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return [_failed("state root", f"{path}: {probe} is not a directory",
                        f"pass --root a directory ({probe} is {_kind(probe)})")]

    def writable(directory: str) -> str | None:
        if os.access(directory, os.W_OK | os.X_OK, effective_ids=True):
            return None
        try:
            if os.statvfs(directory).f_flag & os.ST_RDONLY:
                return "on a read-only file system"
        except OSError:
            pass
        return f"not writable by {host.user}"

    if probe == path:
        why = writable(path)
        if why:
            return [_failed("state root", f"{path}: {why}",
                            f"make {path} writable by {host.user}, or {other}")]
        return [_passed("state root", f"{path}: a directory {host.user} can write")]
    why = writable(probe)
    if why:
        return [_failed("state root", f"{path} does not exist and cannot be created: "
                        f"{probe} is {why}", f"mkdir -p {path} as root (and give it to "
                        f"{host.user}), or {other}")]
    return [_passed("state root", f"{path} does not exist yet; krun creates it "
                    f"(in {probe}, writable by {host.user})")]


def _kind(path: str) -> str:
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "unreadable"
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISLNK, "a dangling symlink"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a directory"


def check_host_config(host: Host) -> list[Check]:
    from krun.hostconfig import section
    from krun.kontain.settings import kontain_mode

    path = host.config
    present = os.path.lexists(path)
    # Every create reads the [kontain] table (the mode decides whether a container runs
    # under KM), so a file that does not parse stops every container.
    try:
        section("kontain")
        kontain_mode(host.g.kontain)
    except KrunError as e:
        return [_failed("host config", e.msg, f"correct {path} (spec/README.md describes "
                        "it), or remove it for the defaults")]
    host.config_ok = True
    try:
        section("network")
    except KrunError as e:
        return [_failed("host config", f"{e.msg} (only bridge networking reads it)",
                        f"correct network.subnet in {path}", ADVISORY)]
    detail = f"{path}: read and valid" if present else f"{path}: absent, the defaults apply"
    return [_passed("host config", detail)]


def check_userns(host: Host) -> list[Check]:
    scope = ADVISORY if host.root else CONTAINERS
    why = " (only rootless krun needs them)" if host.root else ""
    text = _read("/proc/sys/user/max_user_namespaces")
    if text is None or not text.strip().isdigit():
        return [_failed("user namespaces", "this kernel has no user namespaces "
                        "(/proc/sys/user/max_user_namespaces is missing)" + why,
                        "boot a kernel built with CONFIG_USER_NS", scope)]
    limit = int(text)
    if limit == 0:
        return [_failed("user namespaces", "user.max_user_namespaces is 0: none can be "
                        "created" + why, "sysctl -w user.max_user_namespaces=15000", scope)]
    detail = f"user.max_user_namespaces {limit}"
    clone = _read("/proc/sys/kernel/unprivileged_userns_clone")
    if clone is not None:
        detail += f", kernel.unprivileged_userns_clone {clone.strip()}"
        if clone.strip() == "0" and not host.root:
            return [_failed("user namespaces", f"{detail}: {host.user} cannot create one",
                            "sysctl -w kernel.unprivileged_userns_clone=1", scope)]
    apparmor = _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    if apparmor is not None:
        detail += f", kernel.apparmor_restrict_unprivileged_userns {apparmor.strip()}"
        if apparmor.strip() == "1" and not host.root:
            return [_failed("user namespaces", f"{detail}: AppArmor restricts {host.user}'s",
                            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
                            scope)]
    return [_passed("user namespaces", detail + why, scope)]


def _subid_ranges(path: str, host: Host) -> int | None:
    text = _read(path)
    if text is None:
        return None
    names = (host.user, str(host.euid))
    return sum(1 for line in text.splitlines()
               if line.count(":") == 2 and line.split(":")[0] in names)


def check_subids(host: Host) -> list[Check]:
    counts = {path: _subid_ranges(path, host) for path in SUBID_FILES}
    detail = ", ".join(f"{path}: " + ("absent" if n is None else
                                       f"{n or 'no'} range{'' if n == 1 else 's'} for "
                                       f"{host.user}") for path, n in counts.items())
    if host.root:
        return [_passed("subuid/subgid", f"{detail} (root needs none; rootless use with "
                        "several ids does)", ADVISORY)]
    if all(counts.values()):
        return [_passed("subuid/subgid", detail, ADVISORY)]
    return [_failed("subuid/subgid", f"{detail}: rootless containers can map only "
                    f"{host.user}'s own ids",
                    f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 "
                    f"{host.user} (as root; a range no one else has)", ADVISORY)]


# --- Kontain ----------------------------------------------------------------------------


def check_kontain_mode(host: Host) -> list[Check]:
    if not host.config_ok:
        return []  # the host config check said why nothing can be read
    from krun.hostconfig import section
    from krun.kontain.settings import kontain_mode

    mode = kontain_mode(host.g.kontain)
    source = "--kontain" if host.g.kontain else \
        host.config if "mode" in section("kontain") else "the default"
    if mode == "never":
        fix = "drop --kontain=never" if host.g.kontain else \
            f'set mode = "auto" under [kontain] in {host.config}'
        return [_failed("Kontain mode", f"never (from {source}): krun refuses containers "
                        "that ask for Kontain", fix, KONTAIN)]
    return [_passed("Kontain mode", f"{mode} (from {source})", KONTAIN)]


def _names(uid: int, gid: int) -> tuple[str, str]:
    """The user and group names of an owner, or the numbers where there are none."""
    import grp
    import pwd

    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return user, group


def check_device(host: Host) -> list[Check]:
    import stat

    from krun.kontain.handler import DEVICES

    usable, problems, fix = [], [], ""
    for path in DEVICES:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            problems.append(f"{path} absent")
            continue
        except OSError as e:
            problems.append(f"{path}: {_errno_text(e)}")
            continue
        user, group = _names(st.st_uid, st.st_gid)
        owner = f"{stat.filemode(st.st_mode)}, owner {user}, group {group}"
        if not stat.S_ISCHR(st.st_mode):
            problems.append(f"{path} is not a character device ({owner})")
            fix = fix or f"remove {path} and reload the kvm module (modprobe kvm)"
            continue
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as e:
            problems.append(f"{path} ({owner}) does not open read-write for {host.user}: "
                            f"{_errno_text(e)}")
            if isinstance(e, PermissionError):
                fix = fix or (f"usermod -aG {group} {host.user} (then log in again)"
                              if st.st_mode & 0o060 == 0o060 else
                              f"{_kvm_group()}chgrp kvm {path} && chmod 0660 {path}, then "
                              f"usermod -aG kvm {host.user} (a udev rule keeps it so)")
            else:
                fix = fix or "load the module: modprobe kvm_intel (or kvm_amd)"
            continue
        os.close(fd)
        usable.append(f"{path} opens read-write for {host.user} ({owner})")
    if usable:
        return [_passed("KVM device", "; ".join(usable + problems), KONTAIN)]
    fix = fix or ("load KVM: modprobe kvm_intel (or kvm_amd), or Kontain's kkm module; "
                  "a VM needs nested virtualization")
    return [_failed("KVM device", "; ".join(problems), fix, KONTAIN)]


def _kvm_group() -> str:
    """`groupadd -r kvm && ` when the group the fix names does not exist yet."""
    import grp

    try:
        grp.getgrnam("kvm")
    except KeyError:
        return "groupadd -r kvm && "
    return ""


def check_km(host: Host) -> list[Check]:
    import stat

    if not host.config_ok:
        return [_failed("KM", "not checked: the host config does not load",
                        f"correct {host.config} first", KONTAIN)]
    from krun.kontain import settings
    from krun.kontain.km import open_km
    from krun.kontain.native import root_owned_chain

    try:
        path = settings.km_path()
    except KrunError as e:
        return [_failed("KM", e.msg, f"set kontain.km in {host.config} to KM's absolute "
                        "path", KONTAIN)]
    if not os.path.exists(path):
        return [_failed("KM", f"{path}: no such file or directory",
                        f"install Kontain's KM at {path} (krun's install.sh installs one), or set "
                        f"kontain.km in {host.config} to where it is", KONTAIN)]
    real = os.path.realpath(path)
    try:
        st = root_owned_chain(real, "KM")
    except KrunError as e:
        return [_failed("KM", e.msg, f"make {real} and every directory above it root's and "
                        "not writable by group or others (chown root:root, chmod go-w)",
                        KONTAIN)]
    if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        return [_failed("KM", f"{path}: not an executable file ({stat.filemode(st.st_mode)})",
                        f"chmod 0755 {real}", KONTAIN)]
    try:
        km = open_km(path, None)  # the handler's own checks; the pin is compared below
    except KrunError as e:
        return [_failed("KM", e.msg, f"point kontain.km in {host.config} at KM's own file",
                        KONTAIN)]
    shown = path if real == path else f"{path} (-> {real})"
    checks = [_passed("KM", f"{shown}: an executable file, root's and not writable by "
                      "others up to /", KONTAIN)]

    try:
        pin = settings.km_pin()
    except KrunError as e:
        checks.append(_failed("KM pin", e.msg, f'set km_sha256 = "{km.digest}" under '
                              f"[kontain] in {host.config} (if this KM is the one you "
                              "trust), or remove it", KONTAIN))
        return checks
    if pin is None:
        checks.append(_failed("KM pin", f"not pinned: no kontain.km_sha256 in {host.config}; "
                              f"KM's sha256 is {km.digest}",
                              f'add km_sha256 = "{km.digest}" under [kontain] in '
                              f"{host.config}", ADVISORY))
    elif pin.lower() == km.digest:
        checks.append(_passed("KM pin", f"sha256 {km.digest} matches kontain.km_sha256",
                              KONTAIN))
    else:
        checks.append(_failed("KM pin", f"sha256 {km.digest} does not match the pinned "
                              f"{pin} ({host.config}): krun refuses this KM",
                              f'reinstall the KM you pinned, or set km_sha256 = "{km.digest}"'
                              f" in {host.config} if this one is trusted", KONTAIN))
    return checks


def check_init(host: Host) -> list[Check]:
    if not host.config_ok:
        return []
    from krun.kontain import settings

    try:
        path = settings.init_path()
    except KrunError as e:
        return [_failed("krun-init", e.msg, f"set kontain.init in {host.config} to an "
                        "absolute path", KONTAIN)]
    if not os.path.exists(path):
        return [_failed("krun-init", f"{path}: no such file or directory",
                        "reinstall krun: its package carries krun-init", KONTAIN)]
    if not host.binding:
        return [_failed("krun-init", f"{path}: not checked: the libcrun binding does not load",
                        "fix the libcrun binding first", KONTAIN)]
    from krun.kontain.handler import host_binary_fd

    try:
        os.close(host_binary_fd(path, "krun-init"))  # root's, static, on a private ro mount
    except KrunError as e:
        return [_failed("krun-init", e.msg, "reinstall krun as root (install.sh, or "
                        "scripts/install-krun in a checkout): its files are then root's",
                        KONTAIN)]
    return [_passed("krun-init", f"{path}: a static executable, root's and not writable by "
                    "others up to /", KONTAIN)]


# --- engines ----------------------------------------------------------------------------


def check_engines(host: Host) -> list[Check]:
    from krun.commands.install import running_krun
    from krun.engines import Context, installed
    from krun.engines.status import ABSENT, DIFFERENT, NODE_ENGINES, registration

    present = set(installed("/"))
    krun = running_krun()
    ctx = Context(krun, "/", host.g.root or "/run/krun")
    checks = []
    for engine in NODE_ENGINES:
        label = ENGINE_LABELS[engine]
        if engine not in present:
            checks.append(_passed(label, "not installed", ADVISORY))
            continue
        r = registration(engine, ctx)
        files = ", ".join(r.files) or "its configuration"
        if r.registered:
            checks.append(_passed(label, f"installed; krun ({krun}) is registered in {files}",
                                  ADVISORY))
        elif r.state == ABSENT:
            checks.append(_failed(label, f"installed; krun is not registered in {files}",
                                  f"krun install --engine {engine}", ADVISORY))
        elif r.state == DIFFERENT:
            checks.append(_failed(label, f"installed; the krun entry in {files} is not what "
                                  f"`krun install` writes for {krun}",
                                  f"krun install --engine {engine} (updates it)", ADVISORY))
        else:
            checks.append(_failed(label, f"installed; its configuration cannot be read: "
                                  f"{r.error}", f"fix {files} first, then krun install "
                                  f"--engine {engine}", ADVISORY))
    return checks


CHECKS: tuple[tuple[str, Callable[[Host], list[Check]]], ...] = (
    ("kernel", check_kernel),
    ("cgroups", check_cgroups),
    ("interpreter", check_interpreter),
    ("libcrun binding", check_binding),
    ("state root", check_state_root),
    ("host config", check_host_config),
    ("user namespaces", check_userns),
    ("subuid/subgid", check_subids),
    ("Kontain mode", check_kontain_mode),
    ("KVM device", check_device),
    ("KM", check_km),
    ("krun-init", check_init),
    ("engines", check_engines),
)

_SCOPE_OF = {"Kontain mode": KONTAIN, "KVM device": KONTAIN, "KM": KONTAIN,
             "krun-init": KONTAIN, "engines": ADVISORY, "interpreter": ADVISORY,
             "subuid/subgid": ADVISORY}


def run_checks(g: SimpleNamespace) -> list[Check]:
    host = Host(g)
    checks: list[Check] = []
    for name, fn in CHECKS:
        try:
            checks.extend(fn(host))
        except KrunError as e:
            checks.append(_failed(name, e.msg, "see the detail", _SCOPE_OF.get(name,
                                                                                CONTAINERS)))
        except Exception as e:  # a check must never end the report with a traceback
            from krun.cli import _last_resort

            checks.append(_failed(name, f"the check itself failed: {_last_resort(e)}",
                                  "run `krun --debug check` and report it",
                                  _SCOPE_OF.get(name, CONTAINERS)))
    return checks


def _summary(checks: list[Check]) -> tuple[bool, bool, str]:
    blocking = [c.name for c in checks if not c.ok and c.scope == CONTAINERS]
    kontain_blocking = [c.name for c in checks if not c.ok and c.scope == KONTAIN]
    ok = not blocking
    kontain = ok and not kontain_blocking
    first = "krun can run containers" if ok else \
        f"krun cannot run containers ({FAIL_MARK} {', '.join(blocking)})"
    if kontain:
        second = "Kontain containers: yes"
    elif ok:
        second = f"Kontain containers: no ({FAIL_MARK} {', '.join(kontain_blocking)})"
    else:
        second = "Kontain containers: no"
    return ok, kontain, f"{first}; {second}"


def _text(checks: list[Check], summary: str) -> str:
    lines = []
    for c in checks:
        if c.ok:
            lines.append(f"{OK_MARK} {c.name}: {c.detail}")
            continue
        tag = {KONTAIN: " [Kontain only]", ADVISORY: " [advisory]"}.get(c.scope, "")
        lines.append(f"{FAIL_MARK} {c.name}: {c.detail}{tag}")
        lines.append(f"    fix: {c.fix}")
    lines.append(summary)
    return "\n".join(lines) + "\n"


def main(g: SimpleNamespace, name: str, o: SimpleNamespace) -> int:
    checks = run_checks(g)
    ok, kontain, summary = _summary(checks)
    if o.format == "json":
        from krun import fastjson as json

        out = json.dumps({"ok": ok, "kontain": kontain,
                          "checks": [c.json() for c in checks]}) + "\n"
    else:
        out = _text(checks, summary)
    sys.stdout.flush()
    sys.stdout.buffer.write(out.encode("utf-8", "replace"))
    sys.stdout.buffer.flush()
    return 0 if ok else 1
