"""Version manifests, link records and tombstones (SPEC §5), and path safety.

Records are frozen dataclasses; reading one validates its schema and every path in it,
so nothing downstream ever sees a manifest that could write outside its target.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Error, IntegrityError
from .refs import NAME_RE, CollectionId
from .util import NotRegularFile, read_regular

FORMAT = 1
HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Windows takes any "X:" prefix for a drive, not only letters (RtlDetermineDosPathNameType_U).
_DRIVE = re.compile(r"[^/]:")


def path_problem(path: object) -> str | None:
    """Why a manifest path is unsafe, or None when it is a plain relative POSIX path."""
    if not isinstance(path, str) or not path:
        return "is empty"
    if _CONTROL.search(path):
        return "contains a control character"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/"):
        return "is absolute"
    if _DRIVE.match(path):
        return "has a drive prefix"
    for part in path.split("/"):
        if part == "":
            return "has an empty part"
        if part in (".", ".."):
            return f"has a {part!r} part"
        if part.lower() == ".modelreg":
            return "has a .modelreg part"
    return None


def collision_key(path: str) -> str:
    """Paths equal under this key clash on a case-insensitive or normalising filesystem."""
    # Unicode's canonical caseless match (D145): folding can undo a normalisation, so normalise around it.
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", path).casefold())


def paths_problem(paths: list[str]) -> str | None:
    """The first unsafe path or clash in a file list, as a message, else None."""
    seen: dict[str, str] = {}
    for path in paths:
        problem = path_problem(path)
        if problem:
            return f"path {path!r} {problem}"
        key = collision_key(path)
        if key in seen:
            other = seen[key]
            return f"paths {other!r} and {path!r} " + ("are equal" if other == path else "differ only by case or normalisation")
        seen[key] = path
    # A file and a directory of the same name cannot both be written.
    dirs = {key.rsplit("/", 1)[0] for key in seen if "/" in key}
    expanded = set()
    for d in dirs:
        parts = d.split("/")
        expanded.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    for key, path in seen.items():
        if key in expanded:
            return f"path {path!r} is both a file and a directory"
    return None


@dataclass(frozen=True)
class FileEntry:
    path: str
    digest: str
    size: int
    executable: bool

    def to_json(self) -> dict:
        return {"path": self.path, "digest": self.digest, "size": self.size, "executable": self.executable}


@dataclass(frozen=True)
class VersionManifest:
    artifact: CollectionId
    version: int
    digest: str
    size: int
    created: str
    files: tuple[FileEntry, ...]
    metadata: dict = field(default_factory=dict)
    description: str = ""
    inputs: tuple[dict, ...] = ()
    producer: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "artifact": self.artifact.full,
            "version": self.version,
            "digest": self.digest,
            "size": self.size,
            "created": self.created,
            "files": [f.to_json() for f in self.files],
            "metadata": self.metadata,
            "description": self.description,
            "inputs": list(self.inputs),
            "producer": self.producer,
        }


@dataclass(frozen=True)
class LinkRecord:
    version: int
    source: CollectionId
    source_version: int
    source_digest: str
    created: str
    description: str = ""

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": self.version,
            "source": {
                "entity": self.source.entity,
                "project": self.source.project,
                "name": self.source.name,
                "version": self.source_version,
            },
            "source_digest": self.source_digest,
            "created": self.created,
            "description": self.description,
        }


@dataclass(frozen=True)
class Tombstone:
    version: int
    digest: str
    deleted: str

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": self.version, "digest": self.digest, "deleted": self.deleted}


Record = VersionManifest | LinkRecord | Tombstone


def dumps(record: Record, format: int = FORMAT) -> bytes:
    """A record's stored bytes. Format 2 leaves the number out: the change record that
    makes a manifest visible gives it, so a manifest is written before its number exists."""
    # Compact on purpose: with `indent`, json falls back to its pure-Python encoder, which
    # took ~0.1 s for a 5,000-file manifest (`python -m json.tool` pretty-prints one).
    data = record.to_json()
    if format == 2:
        data["format"] = 2
        del data["version"]
    return (json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


FSCK_HINT = "run `modelreg fsck` to list every problem"
# Producer fields modelreg writes, and the types a reader may rely on (`run` may be an
# int when the API was given one).
_PRODUCER_FIELDS = {"user": str, "host": str, "cwd": str, "time": str, "run": (str, int)}


class _Checker:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, message: str) -> IntegrityError:
        return IntegrityError(f"{self.where}: {message}", hint=FSCK_HINT)

    def get(self, data: dict, key: str, kind, optional=False, default=None):
        if key not in data:
            if optional:
                return default
            raise self.fail(f"missing {key!r}")
        value = data[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise self.fail(f"{key!r} is not a non-negative integer")
        if kind is not int and not isinstance(value, kind):
            raise self.fail(f"{key!r} has the wrong type")
        return value

    def digest(self, data: dict, key: str) -> str:
        value = self.get(data, key, str)
        if not HEX64.fullmatch(value):
            raise self.fail(f"{key!r} is not a BLAKE3 hex digest")
        return value


def _collection_id(text: str, check: _Checker) -> CollectionId:
    parts = text.split("/") if isinstance(text, str) else []
    if len(parts) != 3 or not all(NAME_RE.fullmatch(p) for p in parts):
        raise check.fail(f"bad collection name {text!r}")
    return CollectionId(*parts)


def _not_json(token: str):
    raise ValueError(f"{token} is not JSON")


def _inputs(data: dict, check: _Checker) -> tuple[dict, ...]:
    items = check.get(data, "inputs", list, optional=True, default=[])
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("ref"), str) \
                or not isinstance(item.get("digest"), str) or not HEX64.fullmatch(item["digest"]):
            raise check.fail("an entry of 'inputs' is not an object with a string 'ref' and a hex 'digest'")
    return tuple(items)


def _producer(data: dict, check: _Checker) -> dict:
    producer = check.get(data, "producer", dict, optional=True, default={})
    for key, kind in _PRODUCER_FIELDS.items():
        value = producer.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise check.fail(f"producer {key!r} has the wrong type")
    command = producer.get("command")
    if command is not None and not (isinstance(command, list) and all(isinstance(c, str) for c in command)):
        raise check.fail("producer 'command' is not a list of strings")
    git = producer.get("git")
    if git is not None and not (isinstance(git, dict) and isinstance(git.get("commit", ""), str)
                                and isinstance(git.get("dirty", False), bool)):
        raise check.fail("producer 'git' is not an object with a string 'commit' and a boolean 'dirty'")
    return producer


def parse_record(raw: bytes, where: str, expected_version: int | None = None, check_digest: bool = True,
                 number: int | None = None) -> Record:
    """Parse and validate a stored record; IntegrityError (exit 1) on anything wrong.

    With `check_digest`, a version manifest's file list must hash to its recorded digest:
    the digest is what links, inputs and users vouch for, so a file entry re-pointed at
    another blob is refused before anything is served. fsck turns it off to word the
    mismatch itself.
    """
    check = _Checker(where)
    try:
        data = json.loads(raw, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError):
        raise check.fail("not valid JSON") from None
    except RecursionError:
        raise check.fail("nested too deeply to be a record") from None
    if not isinstance(data, dict):
        raise check.fail("not a JSON object")
    if data.get("format") == 2 and number is not None and "version" not in data and "deleted" not in data:
        version = number  # format 2: the number comes from the change record
    elif data.get("format") != FORMAT:
        raise check.fail(f"unknown format {data.get('format')!r}")
    else:
        version = check.get(data, "version", int)
    if expected_version is not None and version != expected_version:
        raise check.fail(f"holds version {version}, expected {expected_version}")
    if "deleted" in data:
        return Tombstone(version, check.digest(data, "digest"), check.get(data, "deleted", str))
    if "source" in data:
        src = check.get(data, "source", dict)
        parts = [check.get(src, k, str) for k in ("entity", "project", "name")]
        source = _collection_id("/".join(parts), check)
        return LinkRecord(
            version=version,
            source=source,
            source_version=check.get(src, "version", int),
            source_digest=check.digest(data, "source_digest"),
            created=check.get(data, "created", str),
            description=check.get(data, "description", str, optional=True, default=""),
        )
    files = []
    for item in check.get(data, "files", list):
        if not isinstance(item, dict):
            raise check.fail("a file entry is not an object")
        executable = check.get(item, "executable", bool, optional=True, default=False)
        files.append(FileEntry(check.get(item, "path", str), check.digest(item, "digest"), check.get(item, "size", int), executable))
    problem = paths_problem([f.path for f in files])
    if problem:
        raise check.fail(f"unsafe manifest: {problem}")
    record = VersionManifest(
        artifact=_collection_id(check.get(data, "artifact", str), check),
        version=version,
        digest=check.digest(data, "digest"),
        size=check.get(data, "size", int),
        created=check.get(data, "created", str),
        files=tuple(files),
        metadata=check.get(data, "metadata", dict, optional=True, default={}),
        description=check.get(data, "description", str, optional=True, default=""),
        inputs=_inputs(data, check),
        producer=_producer(data, check),
    )
    if check_digest:
        from .hashing import version_digest

        if version_digest([(f.path, f.digest, f.size, f.executable) for f in files]) != record.digest:
            raise check.fail("the manifest's file list does not match its digest; it was changed")
    return record


def read_record(path: Path, expected_version: int | None = None, check_digest: bool = True) -> Record:
    """Read and parse a stored record; FileNotFoundError passes, any other failure is exit 1."""
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        raise
    except NotRegularFile as exc:
        raise IntegrityError(f"{path}: {exc.strerror}", hint=FSCK_HINT) from None
    except OSError as exc:
        raise Error(f"{path}: cannot be read: {exc.strerror or exc}", hint=FSCK_HINT) from None
    return parse_record(raw, str(path), expected_version, check_digest)
