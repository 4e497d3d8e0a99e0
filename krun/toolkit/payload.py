"""C sources to a Kontain payload (.km): `krun payload build` and `krun payload cc`.

A payload is a static, non-PIE x86-64 executable linked at 0x200000 (Kontain's link
line), built against krun's libc for payloads (native/payload-libc, installed inside
the package as the SDK: headers, crt1.o, libkrunc.a) rather than glibc: every system
service is a KM hypercall, so the result runs only inside a Kontain VM.

Floating point: the guests of nested-KVM hosts like this one fault on SSE arithmetic
and x87, so payloads are compiled with -mgeneral-regs-only unless --sse says the
target's guests have it; a float then fails at compile time, with a hint, instead of
stopping the vCPU at run time.

The cache (build only): an object is keyed by the preprocessed source (so a changed
header counts), the flags, the compiler's version and the SDK's digest; a payload by
its objects' keys, the link flags and the static libraries' contents. A hit copies the
cached file; nothing is ever trusted by timestamp.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from krun.errors import KrunError, UsageError

# Hosted, not -ffreestanding: the payload libc provides the standard library, and with
# -ffreestanding gcc drops main's implicit `return 0` (a main without one would exit with
# whatever its last call returned).
COMPILE_FLAGS = ["-fno-stack-protector", "-fno-pie", "-fno-asynchronous-unwind-tables"]
NO_SSE = ["-mgeneral-regs-only"]
LINK_FLAGS = ["-static", "-no-pie", "-nostdlib", "-Wl,-z,separate-code",
              "-Wl,-z,max-page-size=0x1000", "-Wl,-Ttext-segment=0x200000"]
# What makes a dynamic or position-independent executable: a payload is neither.
DYNAMIC_FLAGS = {"-shared", "-pie", "-static-pie", "-rdynamic", "-dynamic",
                 "-Wl,-pie", "-Wl,--pie", "-Wl,-shared", "-Wl,--shared", "-Wl,-Bdynamic",
                 "-Wl,-call_shared"}
MODULE_SECTION = ".krun.module.name"
_UNDEFINED = re.compile(r"undefined reference to `([^']+)'")
_FLOAT = re.compile(r"SSE register (return|argument)|SSE disabled|x87 register return")


def sdk_dir() -> Path:
    return Path(__file__).resolve().parent / "sdk"


@dataclass
class Sdk:
    root: Path
    gcc: str = "gcc"
    _gcc_include: str | None = None
    _digest: str | None = None

    @classmethod
    def installed(cls) -> Sdk:
        root = sdk_dir()
        if not (root / "lib" / "libkrunc.a").is_file():
            raise KrunError(f"{root}: the payload SDK is missing from this krun (reinstall "
                            "krun: its package carries it)")
        if shutil.which("gcc") is None:
            raise KrunError("gcc: executable file not found in $PATH (install gcc: apt-get "
                            "install gcc)")
        return cls(root)

    @property
    def include(self) -> Path:
        return self.root / "include"

    @property
    def crt1(self) -> Path:
        return self.root / "lib" / "crt1.o"

    @property
    def libc(self) -> Path:
        return self.root / "lib" / "libkrunc.a"

    def gcc_include(self) -> str:
        """gcc's own freestanding headers (stddef.h, stdarg.h, stdint.h, limits.h)."""
        if self._gcc_include is None:
            self._gcc_include = subprocess.run([self.gcc, "-print-file-name=include"],
                                               check=True, capture_output=True, text=True
                                               ).stdout.strip()
        return self._gcc_include

    def compile_flags(self, sse: bool) -> list[str]:
        return ["-nostdinc", "-isystem", str(self.include), "-isystem", self.gcc_include(),
                *COMPILE_FLAGS, *([] if sse else NO_SSE)]

    def digest(self) -> str:
        """The SDK's content and the compiler's version: either changing rebuilds all."""
        if self._digest is None:
            h = hashlib.sha256()
            for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
                h.update(str(path.relative_to(self.root)).encode() + b"\0")
                h.update(path.read_bytes())
            h.update(subprocess.run([self.gcc, "--version"], capture_output=True,
                                    check=True).stdout)
            self._digest = h.hexdigest()
        return self._digest


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "krun" / "payload"


def refuse_dynamic(args: list[str]) -> None:
    for a in args:
        if a in DYNAMIC_FLAGS:
            raise UsageError(f"{a}: a payload is a static, non-PIE executable (Kontain links "
                             "it at 0x200000); dynamic and PIE links are not supported")


def _run_gcc(argv: list[str], verbose: bool,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if verbose:
        print("+ " + " ".join(argv), file=sys.stderr)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", cwd=cwd)
    except FileNotFoundError:
        raise KrunError(f"{argv[0]}: executable file not found in $PATH") from None
    # The compiler's own messages first, as it wrote them.
    sys.stderr.write(proc.stderr)
    sys.stderr.flush()
    return proc


def _float_hint(stderr: str, sse: bool) -> str:
    if not sse and _FLOAT.search(stderr):
        return (" (floating point: payloads are built without SSE, which this host's guests "
                "lack; --sse builds for guests that have it)")
    return ""


def _atomic_copy(src: Path, dest: Path, mode: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f, open(src, "rb") as s:
            shutil.copyfileobj(s, f)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise


@dataclass
class Build:
    sources: list[Path]
    output: Path
    include_dirs: list[Path] = field(default_factory=list)
    defines: list[str] = field(default_factory=list)
    optimize: str = "2"
    static_libs: list[Path] = field(default_factory=list)
    modules: Path | None = None
    sse: bool = False
    verbose: bool = False
    cache: bool = True

    def cflags(self) -> list[str]:
        return [f"-O{self.optimize}", *(f"-I{d}" for d in self.include_dirs),
                *(f"-D{d}" for d in self.defines)]


class Builder:
    def __init__(self, sdk: Sdk, work: Path) -> None:
        self.sdk, self.work = sdk, work
        self.cache = cache_dir()
        self.hits = self.misses = 0

    def _cached(self, kind: str, key: str) -> Path:
        return self.cache / kind / key[:2] / key

    def compile(self, src: Path, flags: list[str], b: Build, tag: str = "") -> tuple[Path, str]:
        """An object for src (from the cache when the preprocessed text, flags, compiler
        and SDK are the same), and its key."""
        base = [self.sdk.gcc, *self.sdk.compile_flags(b.sse), *flags]
        # krun's own generated sources are named relative to the temporary directory
        # they live in, so their preprocessed text (line markers) and key stay the same.
        cwd = self.work if src.parent == self.work else None
        name = src.name if cwd else str(src)
        pre = subprocess.run([*base, "-E", name], capture_output=True, cwd=cwd)
        if pre.returncode != 0:
            # Let the real compile report it, with the compiler's words.
            key = None
        else:
            h = hashlib.sha256(self.sdk.digest().encode())
            h.update("\0".join(base).encode())
            h.update(pre.stdout)
            key = h.hexdigest()
            hit = self._cached("obj", key)
            if b.cache and hit.is_file():
                self.hits += 1
                return hit, key
        self.misses += 1
        obj = self.work / f"{tag}{len(list(self.work.iterdir()))}-{src.stem}.o"
        proc = _run_gcc([*base, "-c", name, "-o", str(obj)], b.verbose, cwd)
        if proc.returncode != 0:
            raise KrunError(f"payload build: compiling {src} failed"
                            + _float_hint(proc.stderr, b.sse))
        if key is None:  # preprocessing failed but compiling did not: do not cache
            return obj, hashlib.sha256(obj.read_bytes()).hexdigest()
        if b.cache:
            _atomic_copy(obj, self._cached("obj", key), 0o644)
        return obj, key

    def link(self, objects: list[tuple[Path, str]], b: Build) -> bool:
        """Link the payload to b.output; True when it came from the cache."""
        argv = [self.sdk.gcc, *LINK_FLAGS, "-o", "OUT", str(self.sdk.crt1),
                *(str(o) for o, _ in objects), *(str(lib) for lib in b.static_libs),
                str(self.sdk.libc), "-lgcc"]
        h = hashlib.sha256(self.sdk.digest().encode())
        for _, key in objects:
            h.update(key.encode())
        for lib in b.static_libs:
            h.update(hashlib.sha256(lib.read_bytes()).hexdigest().encode())
        h.update("\0".join(LINK_FLAGS).encode())
        key = h.hexdigest()
        hit = self._cached("km", key)
        if b.cache and hit.is_file():
            _atomic_copy(hit, b.output, 0o755)
            return True
        out = self.work / "payload.km"
        argv[argv.index("OUT")] = str(out)
        proc = _run_gcc(argv, b.verbose)
        if proc.returncode != 0:
            raise KrunError(f"payload build: linking {b.output} failed: "
                            + _link_reason(proc.stderr))
        if b.cache:
            _atomic_copy(out, self._cached("km", key), 0o755)
        _atomic_copy(out, b.output, 0o755)
        return False


def _link_reason(stderr: str) -> str:
    missing = sorted(set(_UNDEFINED.findall(stderr)))
    if "main" in missing:
        return "no main() function (a payload needs one)"
    if missing:
        names = ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
        return (f"undefined {'symbol' if len(missing) == 1 else 'symbols'} {names}: not "
                "provided by the payload runtime (krun's libc for payloads) nor by your "
                "sources")
    return "see the linker's messages above"


def build(b: Build) -> Builder:
    for src in b.sources:
        if not src.is_file():
            raise KrunError(f"{src}: no such file or directory")
    for lib in b.static_libs:
        if not lib.is_file():
            raise KrunError(f"{lib}: no such file or directory")
        if lib.suffix != ".a":
            raise UsageError(f"--static-lib {lib}: a static library (.a) is needed; a payload "
                             "has no shared libraries")
    if not b.sources and b.modules is None:
        raise UsageError("no sources: name C files, or --modules DIR")
    if b.output.is_dir():
        raise KrunError(f"-o {b.output}: is a directory")
    sdk = Sdk.installed()
    with tempfile.TemporaryDirectory(prefix="krun-payload-") as tmp:
        builder = Builder(sdk, Path(tmp))
        objects = [builder.compile(src, b.cflags(), b) for src in b.sources]
        if b.modules is not None:
            from krun.toolkit import modules

            objects += modules.build(builder, b, core_given=bool(b.sources))
        builder.link(objects, b)
        return builder


def cc(args: list[str]) -> int:
    """`krun payload cc`: gcc, made to build payloads, for build systems (CC=...)."""
    refuse_dynamic(args)
    sdk = Sdk.installed()
    compile_only = any(a in ("-c", "-S", "-E", "-M", "-MM") for a in args)
    argv = [sdk.gcc, *sdk.compile_flags(sse="--sse" in args),
            *(a for a in args if a != "--sse")]
    if not compile_only:
        argv[1:1] = LINK_FLAGS
        argv.insert(1 + len(LINK_FLAGS), str(sdk.crt1))
        argv += [str(sdk.libc), "-lgcc"]
    try:
        return subprocess.run(argv).returncode
    except FileNotFoundError:
        raise KrunError(f"{argv[0]}: executable file not found in $PATH") from None
