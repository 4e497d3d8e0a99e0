"""Kontain mode on real containers, with the project's monitor installed as host KM."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, BundleFactory, KontainBundle, Krun

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/kvm"),
                                reason="no /dev/kvm on this machine: Kontain needs KVM")

HOST_KM = Path("/opt/kontain/bin/km")
PAYLOADS = REPO / "km_payloads"


@pytest.fixture(scope="module", autouse=True)
def host_km() -> None:
    if not HOST_KM.exists() or not (PAYLOADS / "hello.km").exists():
        pytest.fail("the host KM or the payloads are missing: run scripts/setup")


def km_direct(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HOST_KM), *args], capture_output=True, text=True, timeout=30)


def _leftovers(krun: Krun, cid: str) -> list[str]:
    found = [str(p) for p in (krun.root / cid, krun.root / ".krun" / f"{cid}.json") if p.exists()]
    found += [c for c in ("memory", "pids", "devices")
              if Path(f"/sys/fs/cgroup/{c}/{cid}").exists()]
    return found


V1 = {"version": 1}


@pytest.mark.parametrize("payload_args", [
    ["/hello.km"], ["/args.km", "a", "b c"], ["/exit.km", "0"], ["/exit.km", "3"],
    ["/exit.km", "255"], ["/uname.km"], ["/files.km", "/tmp/proof"],
], ids=" ".join)
def test_payloads_run_like_under_km_directly(krun: Krun, kbundle: KontainBundle, cid: str,
                                            payload_args: list[str]) -> None:
    b = kbundle(payload_args, V1)
    proc = krun("run", "--bundle", str(b), cid, check=False)
    direct = km_direct(str(b / "rootfs" / payload_args[0].lstrip("/")), *payload_args[1:])
    assert proc.returncode == direct.returncode
    if payload_args[0] == "/args.km":
        # argv[0] is the payload path as KM was given it: inside vs outside the container.
        assert proc.stdout.splitlines()[1:3] == ["argv[1]=a", "argv[2]=b c"]
        assert proc.stdout.splitlines()[0] == "argv[0]=/args.km"
        assert "env=TERM=xterm" in proc.stdout.splitlines()
    elif payload_args[0] == "/files.km":
        assert proc.returncode == 0 and proc.stdout.strip()
        assert (b / "rootfs" / "tmp" / "proof").exists(), "the payload saw the container's fs"
    else:
        assert proc.stdout == direct.stdout
    if payload_args[0] == "/uname.km":
        assert proc.stdout.strip().endswith(".kontain.KVM")


def test_payload_through_create_and_start(krun: Krun, kbundle: KontainBundle, cid: str,
                                          tmp_path: Path) -> None:
    b = kbundle(["/files.km", "/tmp/created"], V1)
    krun("create", "--bundle", str(b), cid)
    time.sleep(0.2)
    assert not (b / "rootfs" / "tmp" / "created").exists(), "the payload ran before start"
    krun("start", cid)
    krun.wait_status(cid, "stopped")
    assert (b / "rootfs" / "tmp" / "created").exists()
    state = krun.state(cid)
    assert state["annotations"]["app.kontain.km.sha256"] == hashlib.sha256(
        HOST_KM.read_bytes()).hexdigest()
    assert state["annotations"]["app.kontain.device"] == "/dev/kvm"
    krun("delete", cid)


@pytest.mark.parametrize("trigger", ["object", "annotation", "marker", "always"])
def test_each_trigger(krun: Krun, kbundle: KontainBundle, cid: str, trigger: str) -> None:
    mutate = None
    if trigger == "annotation":
        def mutate(c: dict[str, Any]) -> None:
            c["annotations"] = {"app.kontain.version": "1"}
    b = kbundle(["/uname.km"], V1 if trigger == "object" else None, mutate=mutate)
    if trigger == "marker":
        (b / "rootfs" / ".kontain").write_text("")
    flags = ["--kontain=always"] if trigger == "always" else []
    proc = krun(*flags, "run", "--bundle", str(b), cid)
    assert proc.stdout.strip().endswith(".kontain.KVM")


def test_no_trigger_runs_natively_and_config_is_untouched(krun: Krun, kbundle: KontainBundle,
                                                         cid: str) -> None:
    b = kbundle(["/hello.km"])
    raw = (b / "config.json").read_bytes()
    proc = krun("run", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 139, "a payload crashes natively (SIGSEGV on its hypercall)"
    b2 = kbundle(["sleep", "100"], busybox=True)
    raw = (b2 / "config.json").read_bytes()
    krun("create", "--bundle", str(b2), cid)
    assert (krun.root / cid / "config.json").read_bytes() == raw, "libcrun got other bytes"
    krun("delete", "--force", cid)


def test_never_mode_refuses_a_kontain_container(krun: Krun, kbundle: KontainBundle,
                                                cid: str) -> None:
    b = kbundle(["/hello.km"], V1)
    proc = krun("--kontain=never", "run", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and "--kontain=never" in proc.stderr
    assert _leftovers(krun, cid) == []


def test_jsonschema_is_not_imported_for_plain_containers(krun: Krun, bundle: BundleFactory,
                                                         kbundle: KontainBundle,
                                                         cid: str) -> None:
    launcher = open(krun.binary).readline()[2:].split()[0]

    def imports(b: Path) -> str:
        proc = subprocess.run([launcher, "-IS", "-X", "importtime", krun.binary, "--root",
                               str(krun.root), "run", "--bundle", str(b), cid],
                              capture_output=True, text=True, timeout=60)
        return proc.stderr

    assert "jsonschema" not in imports(bundle(["true"]))
    # A Kontain extension is validated with jsonschema the first time it is seen; the
    # same extension again reuses that verdict.
    from krun.kontain.extension import validated_dir

    shutil.rmtree(validated_dir(str(krun.root)), ignore_errors=True)
    assert "jsonschema" in imports(kbundle(["/hello.km"], V1))
    assert "jsonschema" not in imports(kbundle(["/hello.km"], V1))


def test_exec_payload_into_running_container(krun: Krun, kbundle: KontainBundle,
                                             cid: str) -> None:
    b = kbundle(["/sleeper.km", "1000"], V1)
    krun("run", "-d", "--bundle", str(b), cid)
    proc = krun("exec", cid, "/hello.km")
    assert proc.stdout == "Hello from Kontain!\n"
    proc = krun("exec", cid, "/exit.km", "9", check=False)
    assert proc.returncode == 9
    krun("kill", cid, "TERM")
    krun.wait_status(cid, "stopped")
    krun("delete", cid)


def test_native_binary_runs_under_km_unless_allow_listed(krun: Krun, kbundle: KontainBundle,
                                                         cid: str) -> None:
    busybox_sha = hashlib.sha256(Path("/bin/busybox").read_bytes()).hexdigest()
    ext = {"version": 1, "exec": {"policy": "allow", "allow": [
        {"path": "/bin/busybox", "sha256": busybox_sha},
        {"path": "/bin/busybox-copy", "sha256": "0" * 64}]}}
    b = kbundle(["/sleeper.km", "1000"], ext, busybox=True)
    shutil.copy(b / "rootfs" / "bin" / "busybox", b / "rootfs" / "bin" / "busybox-copy")
    krun("run", "-d", "--bundle", str(b), cid)
    # Allow-listed with the right digest: native.
    assert krun("exec", cid, "/bin/busybox", "echo", "native").stdout == "native\n"
    # `echo` resolves through a symlink to /bin/busybox: the same allowed file.
    assert krun("exec", cid, "echo", "via-path").stdout == "via-path\n"
    # Same content, wrong pinned digest: under KM, where a glibc binary cannot run.
    proc = krun("exec", cid, "/bin/busybox-copy", "echo", "never", check=False)
    assert proc.returncode != 0 and "never" not in proc.stdout
    krun("delete", "--force", cid)


def test_exec_policy_km_puts_every_binary_under_km(krun: Krun, kbundle: KontainBundle,
                                                   cid: str) -> None:
    b = kbundle(["/sleeper.km", "1000"], V1, busybox=True)
    krun("run", "-d", "--bundle", str(b), cid)
    proc = krun("exec", cid, "/bin/busybox", "echo", "native", check=False)
    assert proc.returncode != 0 and "native" not in proc.stdout
    krun("delete", "--force", cid)


def test_image_cannot_replace_km(krun: Krun, kbundle: KontainBundle, cid: str) -> None:
    b = kbundle(["/hello.km"], V1, busybox=True)
    fake = b / "rootfs" / "opt" / "kontain" / "bin" / "km"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho FAKE KM\n")
    fake.chmod(0o755)
    proc = krun("run", "--bundle", str(b), cid)
    assert proc.stdout == "Hello from Kontain!\n"
    assert fake.read_text() == "#!/bin/sh\necho FAKE KM\n"


def test_km_is_read_only_in_the_container(krun: Krun, kbundle: KontainBundle, cid: str) -> None:
    b = kbundle(["/sleeper.km", "1000"], {"version": 1, "exec": {"policy": "allow", "allow": [
        {"path": "/bin/busybox",
         "sha256": hashlib.sha256(Path("/bin/busybox").read_bytes()).hexdigest()}]}},
        busybox=True)
    krun("run", "-d", "--bundle", str(b), cid)
    before = HOST_KM.read_bytes()
    proc = krun("exec", cid, "/bin/busybox", "sh", "-c",
                "echo x >> /opt/kontain/bin/km; echo rc=$?", check=False)
    assert "rc=1" in proc.stdout
    assert HOST_KM.read_bytes() == before
    krun("delete", "--force", cid)


@pytest.fixture
def host_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A root-owned directory on the host that nobody else can write, as KM and engine
    inits live in (/tmp is world-writable, so krun refuses binaries below it)."""
    from conftest import ROOTS_BASE

    ROOTS_BASE.mkdir(mode=0o700, exist_ok=True)
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    path = ROOTS_BASE / f"host-{os.getpid()}-{name}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def mini_init(host_dir: Path) -> Path:
    """tests/data/mini_init.c built static: a docker-init lookalike that prints the
    kernel release it runs on (the host's natively, `.kontain.KVM` under KM)."""
    out = host_dir / "mini-init"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(REPO / "tests" / "data" /
                    "mini_init.c")], check=True, capture_output=True)
    out.chmod(0o755)
    return out


def _init_mount(source: Path, destination: str = "/sbin/docker-init") -> Callable[..., None]:
    def mutate(c: dict[str, Any]) -> None:
        c["mounts"].append({"destination": destination, "type": "bind",
                            "source": str(source), "options": ["bind", "ro"]})
    return mutate


HOST_RELEASE = os.uname().release


@pytest.mark.parametrize("where", ["/sbin/docker-init", "/run/podman-init"])
def test_host_init_stays_native_and_its_child_runs_under_km(
        krun: Krun, kbundle: KontainBundle, cid: str, mini_init: Path, where: str) -> None:
    b = kbundle([where, "--", "/hello.km"], V1, busybox=True, mutate=_init_mount(mini_init,
                                                                                 where))
    proc = krun("run", "--bundle", str(b), cid)
    assert proc.stdout == "Hello from Kontain!\n"
    assert f"mini-init: release={HOST_RELEASE}" in proc.stderr, "the host init ran natively"


@pytest.mark.parametrize("engine_init", ["/usr/bin/docker-init", "/usr/bin/catatonit"])
def test_engine_inits_stay_native(krun: Krun, kbundle: KontainBundle, cid: str,
                                  engine_init: str) -> None:
    """The inits docker and podman really mount (scripts/install-engines installs them)."""
    if not os.path.exists(engine_init):
        pytest.fail(f"{engine_init} is missing: scripts/install-engines installs it")
    b = kbundle(["/sbin/docker-init", "--", "/exit.km", "7"], V1, busybox=True,
                mutate=_init_mount(Path(engine_init)))
    assert krun("run", "--bundle", str(b), cid, check=False).returncode == 7


def test_image_init_never_runs_natively(krun: Krun, kbundle: KontainBundle, cid: str,
                                        mini_init: Path) -> None:
    """An init the image ships — at the init's usual path, or bind-mounted from inside
    the rootfs — is the image's code: it runs under KM like any other (and a script or a
    glibc binary cannot), never natively; at exec no init stays native at all."""
    # A script is a payload whose interpreter (busybox sh) runs under KM: whatever it
    # manages there, it is not on the host's kernel.
    script = '#!/bin/sh\necho "release=$(uname -r)" >&2\nshift\nexec "$@"\n'
    b = kbundle(["/sbin/docker-init", "--", "/hello.km"], V1, busybox=True)
    (b / "rootfs" / "sbin" / "docker-init").write_text(script)
    (b / "rootfs" / "sbin" / "docker-init").chmod(0o755)
    proc = krun("run", "--bundle", str(b), cid, check=False)
    assert f"release={HOST_RELEASE}" not in proc.stderr + proc.stdout
    assert proc.stdout != "Hello from Kontain!\n", "the image's init ran and started KM"
    assert _leftovers(krun, cid) == []
    # An ELF the image ships there is a payload like any other.
    shutil.copy(mini_init, b / "rootfs" / "sbin" / "docker-init")
    proc = krun("run", "--bundle", str(b), cid, check=False)
    assert f"release={HOST_RELEASE}" not in proc.stderr + proc.stdout
    assert _leftovers(krun, cid) == []
    # A bind mount whose source is the image's own file is no host init either.
    b2 = kbundle(["/sbin/docker-init", "--", "/hello.km"], V1, busybox=True)
    shutil.copy(mini_init, b2 / "rootfs" / "evil-init")
    config = json.loads((b2 / "config.json").read_text())
    _init_mount(b2 / "rootfs" / "bin" / ".." / "evil-init")(config)
    (b2 / "config.json").write_text(json.dumps(config))
    proc = krun("run", "--bundle", str(b2), cid, check=False)
    assert proc.returncode != 0 and f"release={HOST_RELEASE}" not in proc.stderr
    assert _leftovers(krun, cid) == []
    # Through exec: the host init mounted, a running container, `exec init -- payload`.
    b3 = kbundle(["/sleeper.km", "1000"], V1, busybox=True, mutate=_init_mount(mini_init))
    krun("run", "-d", "--bundle", str(b3), cid)
    proc = krun("exec", cid, "/sbin/docker-init", "--", "/hello.km", check=False)
    assert f"release={HOST_RELEASE}" not in proc.stderr + proc.stdout
    krun("delete", "--force", cid)


def test_host_init_must_be_root_owned_and_static(krun: Krun, kbundle: KontainBundle,
                                                 cid: str, host_dir: Path,
                                                 mini_init: Path) -> None:
    writable = host_dir / "writable-init"
    shutil.copy(mini_init, writable)
    writable.chmod(0o777)
    dynamic = host_dir / "dynamic-init"
    shutil.copy("/bin/true", dynamic)
    for init, message in ((writable, "writable by non-root"),
                          (dynamic, "dynamically linked")):
        b = kbundle(["/sbin/docker-init", "--", "/hello.km"], V1, busybox=True,
                    mutate=_init_mount(init))
        proc = krun("run", "--bundle", str(b), cid, check=False)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert _leftovers(krun, cid) == []


def test_km_options_env_put_and_verbose(krun: Krun, kbundle: KontainBundle, cid: str) -> None:
    ext = {"version": 1, "km": {"verbose": True, "log": "/tmp/km.log",
                                "env": {"policy": "put", "vars": ["ONLY=this"]}}}
    b = kbundle(["/args.km"], ext)
    proc = krun("run", "--bundle", str(b), cid)
    envs = [line for line in proc.stdout.splitlines() if line.startswith("env=")]
    assert envs == ["env=ONLY=this"]
    assert (b / "rootfs" / "tmp" / "km.log").read_text().strip(), "KM --verbose logged nothing"


def _with_host_config(tmp_path: Path, **kontain: str) -> dict[str, str]:
    conf = tmp_path / f"krun-{len(list(tmp_path.glob('krun-*.toml')))}.toml"
    conf.write_text("[kontain]\n" + "".join(f'{k} = "{v}"\n' for k, v in kontain.items()))
    return {**os.environ, "KRUN_CONFIG": str(conf)}


def test_km_pin_mismatch_and_bad_km_are_refused(krun: Krun, kbundle: KontainBundle, cid: str,
                                                tmp_path: Path, host_dir: Path) -> None:
    b = kbundle(["/hello.km"], V1)
    good = hashlib.sha256(HOST_KM.read_bytes()).hexdigest()
    env = _with_host_config(tmp_path, km_sha256=good)
    assert krun("run", "--bundle", str(b), cid, env=env).stdout == "Hello from Kontain!\n"
    kmdir = host_dir / "kmdir"
    kmdir.mkdir(mode=0o755)
    cases: dict[str, tuple[dict[str, str], str]] = {
        "mismatch": (_with_host_config(tmp_path, km_sha256="f" * 64), "does not match"),
        "missing": (_with_host_config(tmp_path, km=str(kmdir / "nope")),
                    "no such file or directory"),
        "empty pin": (_with_host_config(tmp_path, km_sha256=""), "km_sha256"),
    }
    noexec = kmdir / "km-noexec"
    shutil.copy(HOST_KM, noexec)
    noexec.chmod(0o644)
    cases["not executable"] = (_with_host_config(tmp_path, km=str(noexec)), "permission denied")
    writable = kmdir / "km-writable"
    shutil.copy(HOST_KM, writable)
    writable.chmod(0o777)
    cases["writable"] = (_with_host_config(tmp_path, km=str(writable)), "writable by non-root")
    open_dir = host_dir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    (open_dir / "bin").mkdir(mode=0o755)
    shutil.copy(HOST_KM, open_dir / "bin" / "km")
    cases["parent writable"] = (_with_host_config(tmp_path, km=str(open_dir / "bin" / "km")),
                                "writable by non-root")
    link = kmdir / "km-link"
    link.symlink_to("/bin/busybox")
    cases["symlink out"] = (_with_host_config(tmp_path, km=str(link)), "symlink out of")
    (kmdir / "bin").mkdir(mode=0o755)
    shutil.copy(HOST_KM, kmdir / "km-up")
    (kmdir / "bin" / "km").symlink_to("../km-up")
    cases["symlink to the parent"] = (_with_host_config(tmp_path, km=str(kmdir / "bin" / "km")),
                                      "symlink out of")
    for name, (env, message) in cases.items():
        proc = krun("run", "--bundle", str(b), cid, env=env, check=False)
        assert proc.returncode == 1 and message in proc.stderr, (name, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (name, proc.stderr)
        assert _leftovers(krun, cid) == [], name
    # A link to a versioned KM in KM's own directory is fine.
    shutil.copy(HOST_KM, kmdir / "km-1.0")
    (kmdir / "km").symlink_to("km-1.0")
    env = _with_host_config(tmp_path, km=str(kmdir / "km"))
    assert krun("run", "--bundle", str(b), cid, env=env).stdout == "Hello from Kontain!\n"


def test_km_changed_after_create_refuses_exec(krun: Krun, kbundle: KontainBundle, cid: str,
                                              tmp_path: Path, host_dir: Path) -> None:
    kmdir = host_dir / "km2"
    kmdir.mkdir(mode=0o755)
    km = kmdir / "km"
    shutil.copy(HOST_KM, km)
    env = _with_host_config(tmp_path, km=str(km))
    b = kbundle(["/sleeper.km", "1000"], V1)
    krun("run", "-d", "--bundle", str(b), cid, env=env)
    assert krun("exec", cid, "/hello.km", env=env).stdout == "Hello from Kontain!\n"
    # KM is busy (the running container executes it): an upgrade replaces the file.
    replacement = kmdir / "km.new"
    replacement.write_bytes(HOST_KM.read_bytes() + b"\0")
    replacement.chmod(0o755)
    replacement.replace(km)
    proc = krun("exec", cid, "/hello.km", env=env, check=False)
    assert proc.returncode == 255 and "KM changed" in proc.stderr  # runc: exec never ran
    # The same bytes in a new file: the container still holds the old, deleted one.
    replacement.write_bytes(HOST_KM.read_bytes())
    replacement.chmod(0o755)
    replacement.replace(km)
    proc = krun("exec", cid, "/hello.km", env=env, check=False)
    assert proc.returncode == 255 and "was replaced since the container was created" in \
        proc.stderr
    krun("delete", "--force", cid, env=env)


def _cache(krun: Krun, kind: str) -> list[Path]:
    return sorted((krun.root / ".krun" / "cache").glob(f"{kind}-*"))


def _settle(*paths: Path) -> None:
    """Wait until the files' ctimes are old enough for krun to cache what it read."""
    from krun.filecache import SETTLED_NS

    newest = max(p.stat().st_ctime_ns for p in paths)
    time.sleep(max(0.0, (newest + SETTLED_NS - time.time_ns()) / 1e9 + 0.2))


def test_km_digest_cache_never_hides_a_change(krun: Krun, kbundle: KontainBundle, cid: str,
                                              tmp_path: Path, host_dir: Path) -> None:
    """KM's sha256 is cached by the file's identity: an in-place write of the same size
    that even puts the mtime back must still be hashed again and meet the pin."""
    kmdir = host_dir / "kmc"
    kmdir.mkdir(mode=0o755)
    km = kmdir / "km"
    shutil.copy(HOST_KM, km)
    good = hashlib.sha256(km.read_bytes()).hexdigest()
    env = _with_host_config(tmp_path, km=str(km), km_sha256=good)
    b = kbundle(["/hello.km"], V1)
    # Written just now: read, but not cached (a second write could share its ctime).
    assert krun("run", "--bundle", str(b), cid, env=env).stdout == "Hello from Kontain!\n"
    assert _cache(krun, "km-sha256") == []
    _settle(km, Path(env["KRUN_CONFIG"]))
    assert krun("run", "--bundle", str(b), cid, env=env).stdout == "Hello from Kontain!\n"
    [entry] = _cache(krun, "km-sha256")
    assert entry.read_text() == good and entry.stat().st_mode & 0o777 == 0o600
    assert (entry.parent.stat().st_mode & 0o777) == 0o700
    entry.write_text("not a digest")  # damaged: hashed again (and recorded afresh)
    assert krun("run", "--bundle", str(b), cid, env=env).stdout == "Hello from Kontain!\n"
    assert entry.read_text() == good
    st = km.stat()
    data = bytearray(km.read_bytes())
    data[-1] ^= 0xFF  # the same size, other bytes
    with open(km, "r+b") as f:
        f.write(data)
    os.utime(km, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert km.stat().st_size == st.st_size and km.stat().st_mtime_ns == st.st_mtime_ns
    proc = krun("run", "--bundle", str(b), cid, env=env, check=False)
    assert proc.returncode == 1 and "does not match the pinned" in proc.stderr, proc.stderr
    assert _leftovers(krun, cid) == []
    # A forged entry for the new file is believed only from a directory nobody else could
    # have written: not from a 0755 one, a symlinked one, or through a symlinked entry.
    from krun.filecache import identity

    cache = entry.parent
    forged = cache / f"km-sha256-{identity(km.stat())}"
    forged.write_text(good)
    try:
        cache.chmod(0o755)
        proc = krun("run", "--bundle", str(b), cid, env=env, check=False)
        assert proc.returncode == 1 and "does not match the pinned" in proc.stderr
        cache.chmod(0o700)
        forged.unlink()
        elsewhere = host_dir / "forged"
        elsewhere.mkdir(mode=0o700)
        (elsewhere / forged.name).write_text(good)
        forged.symlink_to(elsewhere / forged.name)
        proc = krun("run", "--bundle", str(b), cid, env=env, check=False)
        assert proc.returncode == 1 and "does not match the pinned" in proc.stderr
        forged.unlink()
        cache.rename(host_dir / "real-cache")
        cache.symlink_to(elsewhere)
        proc = krun("run", "--bundle", str(b), cid, env=env, check=False)
        assert proc.returncode == 1 and "does not match the pinned" in proc.stderr
        cache.unlink()
        (host_dir / "real-cache").rename(cache)
    finally:
        cache.chmod(0o700)
    assert _leftovers(krun, cid) == []
    # Back to the pinned bytes: accepted, and (settled) cached again in place of the old.
    km.write_bytes(HOST_KM.read_bytes())
    dead_writer = cache / ".km-sha256-1.2.3.4.5.4999999"  # a krun SIGKILLed mid-write
    dead_writer.write_text("half")
    _settle(km)
    assert krun("run", "--bundle", str(b), cid, env=env).stdout == "Hello from Kontain!\n"
    assert [p.read_text() for p in _cache(krun, "km-sha256")] == [good]
    assert [p.name for p in cache.glob("*km-sha256-*")] == [f"km-sha256-{identity(km.stat())}"]


def test_host_config_cache_never_hides_an_edit(krun: Krun, kbundle: KontainBundle, cid: str,
                                               tmp_path: Path) -> None:
    b = kbundle(["/hello.km"], V1)
    good = hashlib.sha256(HOST_KM.read_bytes()).hexdigest()
    env = _with_host_config(tmp_path, km_sha256=good)
    conf = Path(env["KRUN_CONFIG"])
    _settle(conf)
    assert krun("run", "--bundle", str(b), cid, env=env).stdout == "Hello from Kontain!\n"
    [entry] = _cache(krun, "hostconfig")
    assert json.loads(entry.read_text()) == {"kontain": {"km_sha256": good}}
    # An edit applies at once, cache or not.
    conf.write_text(f'[kontain]\nkm_sha256 = "{"f" * 64}"\n')
    proc = krun("run", "--bundle", str(b), cid, env=env, check=False)
    assert proc.returncode == 1 and "does not match the pinned" in proc.stderr, proc.stderr
    conf.write_text(f'[kontain]\nkm_sha256 = "{good}"\n')
    _settle(conf)
    assert krun("run", "--bundle", str(b), cid, env=env).stdout == "Hello from Kontain!\n"
    [entry] = _cache(krun, "hostconfig")  # the stale entry went
    # A damaged entry is read past; one that holds what the file may not is refused
    # exactly as the file would be (the keys are checked on every use).
    for damaged, message in (("{not json", None), ("[1, 2]", None),
                             ('{"kontain": {"km_sha256": 5}}', "kontain.km_sha256 must be"),
                             ('{"kontian": {}}', "unknown table [kontian]")):
        entry.write_text(damaged)
        proc = krun("run", "--bundle", str(b), cid, env=env, check=False)
        if message is None:
            assert proc.stdout == "Hello from Kontain!\n", (damaged, proc.stderr)
        else:
            assert proc.returncode == 1 and message in proc.stderr, (damaged, proc.stderr)
            assert len(proc.stderr.strip().splitlines()) == 1
            assert _leftovers(krun, cid) == []


@pytest.mark.parametrize("case,message", [
    ("missing", "no such file or directory"),
    ("text", "not an ELF"),
    ("dynamic", "its interpreter /lib64/ld-linux-x86-64.so.2: no such file or directory"),
    ("lowaddr", "below 2 MiB"),
    ("device", "no usable virtualization device"),
    ("schema", "$.kontain.device"),
    ("schema-version", "$.kontain.version"),
])
def test_errors_at_create(krun: Krun, kbundle: KontainBundle, cid: str, case: str,
                          message: str) -> None:
    ext: dict[str, Any] = dict(V1)
    args = ["/payload"]
    if case == "missing":
        args = ["/no-such.km"]
    if case == "device":
        ext["device"] = "/dev/kkm"
    if case == "schema":
        ext["device"] = "/dev/xyz"
    if case == "schema-version":
        ext["version"] = 2
    b = kbundle(args, ext)
    payload = b / "rootfs" / "payload"
    if case == "text":
        payload.write_text("just text\n")
    elif case == "dynamic":
        shutil.copy("/bin/true", payload)
    elif case == "lowaddr":
        shutil.copy(PAYLOADS / "tests" / "lowaddr.km", payload)
    else:
        shutil.copy(PAYLOADS / "hello.km", payload)
    if case == "device" and os.path.exists("/dev/kkm"):
        pytest.skip("this host has /dev/kkm")
    proc = krun("create", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert _leftovers(krun, cid) == []


def test_spec_kontain(krun: Krun, tmp_path: Path, cid: str) -> None:
    b = tmp_path / "sb"
    (b / "rootfs").mkdir(parents=True)
    krun("spec", "--kontain", "--payload", "/hello.km", "--bundle", str(b))
    config = json.loads((b / "config.json").read_text())
    assert config["kontain"]["version"] == 1 and config["process"]["args"] == ["/hello.km"]
    shutil.copy(PAYLOADS / "hello.km", b / "rootfs" / "hello.km")
    assert krun("run", "--bundle", str(b), cid).stdout == "Hello from Kontain!\n"
