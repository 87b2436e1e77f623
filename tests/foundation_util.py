"""Helpers shared by the tests/test_foundation_*.py files (issue 2, the foundation)."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import datetime, timezone
from pathlib import Path

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)")


def assert_error(result, code: int, *needles: str) -> None:
    """A failed command: SPEC §4's exit code, one `modelreg: error:` line (+ hint), no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.rstrip("\n").split("\n")
    assert lines[0].startswith("modelreg: error: "), result.stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, result.stderr)


def ok(result) -> str:
    """stdout of a command that must have succeeded."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def one_json(result):
    """Exactly one JSON document on stdout."""
    text = ok(result)
    return json.loads(text)  # json.loads refuses trailing data, so this is exactly one document


def is_rfc3339_utc(text) -> bool:
    if not isinstance(text, str) or not RFC3339_UTC.fullmatch(text):
        return False
    return datetime.fromisoformat(text.replace("Z", "+00:00")).utcoffset() == timezone.utc.utcoffset(None)


def tree_snapshot(root: Path) -> dict[str, tuple[bytes, bool]]:
    """relative path -> (content, executable) of every regular file under root (symlinks followed)."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            found[path.relative_to(root).as_posix()] = (path.read_bytes(), bool(os.stat(path).st_mode & stat.S_IXUSR))
    return found


def listing(root: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Every entry under root with what a write would change: type, size, mtime, inode."""
    found = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if any(rel == s or rel.startswith(s + "/") for s in skip):
                continue
            st = os.lstat(path)
            found[rel] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino)
    return found


def collection_dir(registry: Path, name: str, entity="local", project="default") -> Path:
    return registry / "collections" / entity / project / name


def manifest_path(registry: Path, name: str, version: int, entity="local", project="default") -> Path:
    """Version N's manifest (format 2: named by its BLAKE3 in the record that adds N); a
    path that does not exist when no record gives N."""
    from modelreg.layout import local_state

    summary = local_state(str(registry), entity, project, name)["versions"].get(version)
    coll = collection_dir(registry, name, entity, project)
    if not summary or "manifest" not in summary:
        return coll / "manifests" / f"no-v{version}.json"
    return coll / "manifests" / f"{summary['manifest']}.json"


def rewrite_manifest(manifest: Path, data: bytes, **summary) -> Path:
    """Make `data` the manifest that `manifest` (a path from manifest_path) was, as a hostile
    writer could: stored under its own BLAKE3 and named instead by every record that named
    the old one (rewritten); the snapshot, a cache, is dropped so that readers go by the
    records; `summary` fields (e.g. digest) are set in those records' summaries too. The
    new manifest's path."""
    coll = manifest.parent.parent
    digest = blake3_hex(data)
    path = coll / "manifests" / f"{digest}.json"
    path.write_bytes(data)
    for change in sorted((coll / "changes").glob("*.json")):
        record = json.loads(change.read_bytes())
        named = [s for s in record.get("add", {}).values() if s.get("manifest") == manifest.stem]
        for entry in named:
            entry.update(summary, manifest=digest)
        if named:
            os.chmod(change, 0o644)
            change.write_bytes(json.dumps(record, separators=(",", ":")).encode())
    (coll / "snapshot.json").unlink(missing_ok=True)
    return path


def replace_manifest(registry: Path, name: str, version: int, data: bytes, entity="local", project="default") -> Path:
    return rewrite_manifest(manifest_path(registry, name, version, entity, project), data)


def blake3_hex(data: bytes) -> str:
    from blake3 import blake3

    return blake3(data).hexdigest()


