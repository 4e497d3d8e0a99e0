"""The Kontain extension object: from config.json or `app.kontain.*` annotations,
validated against spec/kontain.schema.json. Imported only for Kontain containers, the
only ones that may pay for jsonschema."""

from __future__ import annotations

import os

from krun import fastjson as json
from krun.errors import InvalidConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The build copies spec/*.json into the package: an installed krun never reads a checkout.
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "schemas",
                           "kontain.schema.json")
# Under each --root: digests of (schema, extension) pairs that validated.
VALIDATED = "kontain-validated"


def validated_dir(root: str) -> str:
    from krun.runtime.records import RECORDS

    return os.path.join(root, RECORDS, VALIDATED)


def _from_annotations(annotations: dict[str, str]) -> dict[str, Any]:
    ext: dict[str, Any] = {"version": 1}
    km: dict[str, Any] = {}
    if "app.kontain.verbose" in annotations:
        km["verbose"] = annotations["app.kontain.verbose"] == "true"
    if "app.kontain.log" in annotations:
        km["log"] = annotations["app.kontain.log"]
    if "app.kontain.env" in annotations:
        km["env"] = {"policy": annotations["app.kontain.env"],
                     "vars": [v for v in annotations.get("app.kontain.putenv", "").split("\n")
                              if v]}
    if km:
        ext["km"] = km
    if annotations.get("app.kontain.debug") == "true":
        ext["debug"] = True
    if "app.kontain.device" in annotations:
        ext["device"] = annotations["app.kontain.device"]
    return ext


def extension(config: dict[str, Any], root: str) -> dict[str, Any]:
    """The validated extension; a container triggered otherwise gets version 1 defaults."""
    if "kontain" in config:
        ext, where = config["kontain"], "$.kontain"
    else:
        annotations = config.get("annotations") or {}
        ext, where = _from_annotations(annotations), "$.annotations[app.kontain.*]"
    with open(SCHEMA_PATH, "rb") as f:
        schema_bytes = f.read()
    # jsonschema costs ~100 ms to import: an extension that already passed this very
    # schema (most containers share one) is not validated again. The builtin BLAKE2,
    # not hashlib: hashlib loads OpenSSL (~4 ms), and these are a few hundred bytes.
    from _blake2 import blake2b

    from krun.filecache import trusted

    key = blake2b(schema_bytes + json.dumps(ext, sort_keys=True).encode(),
                  digest_size=32).hexdigest()
    directory = validated_dir(root)
    seen = os.path.join(directory, key)
    if os.path.exists(seen) and trusted(directory):
        return ext
    _validate(ext, json.loads(schema_bytes), where)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(seen, "x"):
            pass
    except OSError:
        pass  # a cache: failing to record costs the next container one validation
    return ext


def _validate(ext: Any, schema: dict[str, Any], where: str) -> None:
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(ext),
                    key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        path = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                               for p in e.absolute_path)
        raise InvalidConfig(f"config.json: {path}: {e.message} (rule: {e.validator})")
