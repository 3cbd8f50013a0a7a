"""Exported models, made once and reused: a folder per (weights, export settings, versions).

An entry is a folder named by a digest of its key. It is built in a temporary folder beside
it, its manifest (the whole key, and every file's size and SHA-256) written last, then renamed
into place, so a reader never sees half an export. Before use, the manifest is read back and
every file checked against it: an entry that fails (damaged, truncated, from another key) is
rebuilt, never used. A new weights file, export setting or runtime version is a new key,
hence a new entry; the entry it replaces (same weights, same runtime) is removed once the new one
is in place.

The cache lives beside torch's hub cache (`$TORCH_HOME`, by default ~/.cache/torch):
`dancingskeletons/exports/`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("dancingskeletons")

MANIFEST = "manifest.json"
#: The manifest's format; a different one is a stale entry.
FORMAT = "dancingskeletons-export/1"


def cache_root() -> Path:
    """The export cache folder: `<torch's hub folder>/../dancingskeletons/exports`."""
    import torch.hub

    return Path(torch.hub.get_dir()).parent / "dancingskeletons" / "exports"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ExportKey:
    """What an export depends on.

    Attributes:
        runtime: The runtime it is for, e.g. "openvino".
        weights_sha256: The source checkpoint's SHA-256.
        settings: The export settings (format, image size, dynamic shapes, ...).
        versions: The versions of the exporter and the runtime, by package name.
    """

    runtime: str
    weights_sha256: str
    settings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "weights_sha256": self.weights_sha256,
                "settings": self.settings, "versions": self.versions}

    def folder_name(self) -> str:
        """"<runtime>-<first 16 hex digits of the key's SHA-256>"."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return f"{self.runtime}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def entry_problem(folder: Path, key: ExportKey) -> str | None:
    """Why a cache entry cannot be used, or None when it is complete and is this key's.

    Checks the manifest's format and key, then every file it lists (size and SHA-256), and
    that it lists every file there is.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError) as error:
        return f"unreadable manifest ({error})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return "manifest of another format"
    if manifest.get("key") != key.as_dict():
        return "made for another key"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return "manifest lists no files"
    present = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    missing = set(files) - present
    if missing:
        return f"{sorted(missing)[0]} is missing"
    extra = present - set(files) - {MANIFEST}
    if extra:
        return f"{sorted(extra)[0]} is not in the manifest"
    for name, expected in files.items():
        path = folder / name
        if path.stat().st_size != expected.get("size"):
            return f"{name} has {path.stat().st_size} bytes, not {expected.get('size')}"
        if file_sha256(path) != expected.get("sha256"):
            return f"{name} does not match its checksum"
    return None


def _write_manifest(folder: Path, key: ExportKey, meta: dict[str, Any]) -> None:
    files = {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(folder.rglob("*")) if path.is_file()
    }
    if not files:
        raise OSError(f"{folder}: the export wrote no files")
    manifest = {"format": FORMAT, "key": key.as_dict(), "meta": meta, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_meta(folder: Path) -> dict[str, Any]:
    """What the builder recorded about the model in an entry's manifest (see `cached_export`)."""
    return json.loads((folder / MANIFEST).read_text())["meta"]


def cached_export(key: ExportKey, build: Callable[[Path], dict[str, Any]], root: Path | None = None) -> Path:
    """The folder of a verified export for `key`, built first when missing, damaged or stale.

    Args:
        key: What the export depends on.
        build: Writes the export into the (empty) folder it is given and returns what to
            record about the model (JSON-friendly; read back with `read_meta`).
        root: The cache folder; None for `cache_root()`.

    Returns:
        The entry's folder.

    Raises:
        OSError: The cache folder cannot be written.
        Exception: Whatever `build` raises (nothing is left behind).
    """
    root = cache_root() if root is None else root
    folder = root / key.folder_name()
    if folder.exists():
        problem = entry_problem(folder, key)
        if problem is None:
            return folder
        log.warning("%s: cached export not used (%s); exporting again", folder, problem)
        shutil.rmtree(folder, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
    try:
        meta = build(building)
        _write_manifest(building, key, meta)
        try:
            os.rename(building, folder)
        except OSError:
            # Another process finished the same export first: use theirs if it checks out.
            if folder.exists() and entry_problem(folder, key) is None:
                return folder
            raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    _remove_superseded(root, key)
    return folder


def _remove_superseded(root: Path, key: ExportKey) -> None:
    """Remove the entries of the same weights for the same runtime made with other settings or
    versions (an upgrade's leftovers, never used again); a folder that is not an entry is left."""
    for other in root.glob(f"{key.runtime}-*"):
        if other.name == key.folder_name() or not other.is_dir():
            continue
        try:
            made_for = json.loads((other / MANIFEST).read_text())["key"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if made_for.get("runtime") == key.runtime and made_for.get("weights_sha256") == key.weights_sha256:
            log.info("%s: removed, made for other settings or versions of the same weights", other)
            shutil.rmtree(other, ignore_errors=True)
