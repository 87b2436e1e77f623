"""One collection on disk: its versions (or links), aliases, history and index.

Readers take no lock: every file they read is published whole (link or rename), so they
see the old state or the new one. Writers hold `collection.lock` while they claim a
number, move aliases, delete versions and append history.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import manifest as mf
from .errors import Conflict, Error, IntegrityError, LockTimeout, NotFound
from .layout import ALIAS_LINE_RE, VERSION_FILE_RE
from .locks import FileLock, break_stale, holder_is_dead, holder_record, lock_wait_seconds, read_record
from .refs import ALIAS_RE, CollectionId
from .util import NotRegularFile, create_file, fsync_dir, now, read_regular, replace_file, rfc3339, write_all

VERSION_FILE = VERSION_FILE_RE
ALIAS_LINE = ALIAS_LINE_RE
KINDS = ("artifact", "registered")
INDEX_FORMAT = 1
# A directory changed this recently may change again within the same timestamp tick, so an
# index stamped with its mtime could miss that change (git's "racy" entries); wait it out.
RACY_NS = 100_000_000


@dataclass(frozen=True)
class Summary:
    """What `ls NAME` needs of one version, from the index or its manifest."""

    version: int
    deleted: bool
    digest: str
    size: int = 0
    files: int = 0
    created: str = ""
    metadata: dict | None = None
    source: dict | None = None  # a link's {"entity", "project", "name", "version"}

    @classmethod
    def of(cls, record: mf.Record) -> "Summary":
        if isinstance(record, mf.Tombstone):
            return cls(record.version, True, record.digest, created=record.deleted)
        if isinstance(record, mf.LinkRecord):
            return cls(record.version, False, record.source_digest, created=record.created,
                       source=record.to_json()["source"])
        return cls(record.version, False, record.digest, record.size, len(record.files),
                   record.created, record.metadata)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class Collection:
    def __init__(self, root: Path, cid: CollectionId, fsync: bool = True) -> None:
        self.id = cid
        self.root = root
        self.tmp = root / "tmp"
        self.fsync = fsync
        self.dir = root / "collections" / cid.entity / cid.project / cid.name
        self.versions_dir = self.dir / "versions"
        self.aliases_dir = self.dir / "aliases"
        self.history_path = self.dir / "history.jsonl"
        self.index_path = self.dir / "index.json"
        self._info: dict | None = None
        # Readers that can do without a bad record set `tolerant`: summaries() then leaves
        # out each record it cannot read and keeps its error here, by number.
        self.tolerant = False
        self.broken: dict[int, Error] = {}

    # -- the collection itself -------------------------------------------------------

    @property
    def info(self) -> dict:
        if self._info is None:
            path = self.dir / "collection.json"
            try:
                data = json.loads(read_regular(path))
            except FileNotFoundError:
                raise NotFound(f"no collection named {self.id.full!r}") from None
            except NotRegularFile as exc:
                raise IntegrityError(f"{path}: {exc.strerror}", hint=mf.FSCK_HINT) from None
            except OSError as exc:
                raise Error(f"{path}: cannot be read: {exc.strerror or exc}", hint=mf.FSCK_HINT) from None
            except (ValueError, RecursionError):
                raise IntegrityError(f"{path}: not valid JSON", hint=mf.FSCK_HINT) from None
            if not isinstance(data, dict) or data.get("kind") not in KINDS:
                raise IntegrityError(f"{path}: unknown collection kind", hint=mf.FSCK_HINT)
            self._info = data
        return self._info

    def exists(self) -> bool:
        # lexists: a collection.json that cannot be read is a broken collection, not a missing one.
        return os.path.lexists(self.dir / "collection.json")

    @property
    def kind(self) -> str:
        return self.info["kind"]

    def ensure(self, kind: str) -> None:
        """Create the collection as `kind` unless it exists; a kind clash is a conflict."""
        if not self.exists():
            self._claim_name()
            for d in (self.versions_dir, self.aliases_dir):
                d.mkdir(parents=True, exist_ok=True)
            record = {"format": mf.FORMAT, "kind": kind, "created": now(), "description": ""}
            create_file(self.tmp, self.dir / "collection.json", json.dumps(record).encode() + b"\n", self.fsync)
            self._info = None
        if self.kind != kind:
            what = "an artifact" if self.kind == "artifact" else "a registered model"
            raise Conflict(f"{self.id.name!r} is already {what} in project {self.id.project!r}",
                           hint="collection names are unique within a project across both kinds")

    def _claim_name(self) -> None:
        """Claim this name's case-folded form in its project, or raise Conflict.

        The claim is a create-only file `.<folded name>.name` beside the collections (a dot
        file: no name starts with a dot, and directory walks skip files), holding the name
        and its creator. Of two creators of `Foo` and `foo` only one can create it, so the
        case check and the creation are one atomic step. A claim whose collection never
        appeared and whose creator is dead (a kill between the two) is broken and retaken.
        """
        project_dir = self.dir.parent
        folded = self.id.name.casefold()
        try:
            others = os.listdir(project_dir)
        except FileNotFoundError:
            others = []
        for other in others:  # collections made before claims existed
            if other != self.id.name and other.casefold() == folded and \
                    (project_dir / other / "collection.json").is_file():
                raise Conflict(f"collection {other!r} already exists; names may not differ only by case")
        project_dir.mkdir(parents=True, exist_ok=True)
        claim = project_dir / f".{folded}.name"
        mine = {"name": self.id.name, **holder_record()}
        deadline = time.monotonic() + lock_wait_seconds()
        while True:
            if create_file(self.tmp, claim, json.dumps(mine).encode() + b"\n", self.fsync):
                return
            record = read_record(claim)
            if record is None:
                continue
            holder = record.get("name")
            if holder == self.id.name:
                return  # ours: an earlier attempt, or a parallel creator of this very name
            if isinstance(holder, str) and (project_dir / holder / "collection.json").is_file():
                raise Conflict(f"collection {holder!r} already exists; names may not differ only by case")
            if holder_is_dead(record):
                break_stale(claim, record, self.tmp)
                continue
            if time.monotonic() >= deadline:
                raise LockTimeout(f"collection {holder!r} is being created by pid {record.get('pid', '?')} "
                                  f"on {record.get('host', '?')}; names may not differ only by case")
            time.sleep(0.02)

    def lock(self, on_break=None) -> FileLock:
        return FileLock(self.dir / "collection.lock", f"collection {self.id.full}", on_break=on_break,
                        tmp_dir=self.tmp)

    # -- versions --------------------------------------------------------------------

    def numbers(self) -> list[int]:
        """Every version number present, tombstones included, ascending."""
        try:
            names = os.listdir(self.versions_dir)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(VERSION_FILE.fullmatch, names) if m)

    def record_path(self, number: int) -> Path:
        return self.versions_dir / f"v{number}.json"

    def read(self, number: int) -> mf.Record:
        path = self.record_path(number)
        try:
            record = mf.read_record(path, expected_version=number)
        except FileNotFoundError:
            raise NotFound(f"{self.id.name}:v{number} does not exist") from None
        if isinstance(record, mf.LinkRecord) != (self.kind == "registered") and not isinstance(record, mf.Tombstone):
            raise IntegrityError(f"{path}: record does not match the collection's kind", hint=mf.FSCK_HINT)
        if isinstance(record, mf.VersionManifest) and record.artifact != self.id:
            raise IntegrityError(f"{path}: belongs to {record.artifact.full}", hint=mf.FSCK_HINT)
        return record

    def summaries(self) -> list[Summary]:
        """Every version's summary, tombstones included, from the index when it is fresh."""
        self.broken = {}
        try:
            stamp = os.stat(self.versions_dir).st_mtime_ns
        except FileNotFoundError:
            return []
        cached = self._read_index(stamp)
        if cached is not None:
            return cached
        result = []
        for number in self.numbers():
            try:
                result.append(Summary.of(self.read(number)))
            except Error as exc:
                if not self.tolerant:
                    raise
                self.broken[number] = exc
        # An index without the broken records would hide them from the next reader.
        if time.time_ns() - stamp > RACY_NS and not self.broken:
            self._write_index(stamp, result)
        return result

    def _read_index(self, stamp: int) -> list[Summary] | None:
        """The cached summaries when the index is fresh and well-formed, else None (rebuild)."""
        try:
            data = json.loads(read_regular(self.index_path))
            if data.get("format") != INDEX_FORMAT or data.get("stamp") != stamp:
                return None
            summaries = [Summary(**item) for item in data["versions"]]
        except (OSError, ValueError, RecursionError, TypeError, KeyError, AttributeError):
            return None
        numbers = [s.version for s in summaries if _well_formed(s)]
        # Readers take the last entry as the newest: the order must hold too.
        return summaries if len(numbers) == len(summaries) and numbers == sorted(set(numbers)) else None

    def _write_index(self, stamp: int, summaries: list[Summary]) -> None:
        data = {"format": INDEX_FORMAT, "stamp": stamp, "versions": [s.to_json() for s in summaries]}
        try:
            # A cache: never fsynced, and a read-only registry simply goes without.
            replace_file(self.tmp, self.index_path, json.dumps(data, separators=(",", ":")).encode(), False)
        except OSError:
            pass

    def live(self) -> list[Summary]:
        return [s for s in self.summaries() if not s.deleted]

    def latest(self) -> int | None:
        live = self.live()
        return live[-1].version if live else None

    def publish(self, make_record) -> int:
        """Publish `make_record(n)` as the next free number n; caller holds the lock.

        link(2) never overwrites: if another writer got there first (which the lock
        prevents, unless the lock was broken as stale), the next number is tried.
        """
        number = (self.numbers() or [-1])[-1] + 1
        while True:
            data = mf.dumps(make_record(number))
            if create_file(self.tmp, self.record_path(number), data, self.fsync):
                return number
            number += 1

    def replace_record(self, record: mf.Record) -> None:
        replace_file(self.tmp, self.record_path(record.version), mf.dumps(record), self.fsync)

    # -- aliases ---------------------------------------------------------------------

    def aliases(self) -> dict[str, int]:
        """alias -> version number; unreadable alias files are left to fsck."""
        result: dict[str, int] = {}
        try:
            names = os.listdir(self.aliases_dir)
        except FileNotFoundError:
            return result
        for name in names:
            if not ALIAS_RE.fullmatch(name):
                continue
            try:
                match = ALIAS_LINE.fullmatch(read_regular(self.aliases_dir / name).decode())
            except (OSError, UnicodeDecodeError):
                continue
            if match:
                result[name] = int(match.group(1))
        return dict(sorted(result.items()))

    def set_alias(self, alias: str, number: int) -> None:
        replace_file(self.tmp, self.aliases_dir / alias, f"v{number}\n".encode(), self.fsync)

    def remove_alias(self, alias: str) -> None:
        (self.aliases_dir / alias).unlink(missing_ok=True)
        if self.fsync:
            fsync_dir(self.aliases_dir)

    # -- history ---------------------------------------------------------------------

    def append_history(self, events: list[dict]) -> None:
        """Append events as JSON lines in one write; caller holds the lock."""
        if not events:
            return
        data = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in events).encode()
        fd = os.open(self.history_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            end = _drop_torn_tail(fd)
            try:
                write_all(fd, data)  # a short write (disk full) must not go unnoticed
            except OSError:
                os.ftruncate(fd, end)  # leave no torn line behind
                raise
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def repair_history(self) -> int:
        """Drop a torn final line (an append cut short by a crash); caller holds the lock."""
        try:
            fd = os.open(self.history_path, os.O_RDWR)
        except FileNotFoundError:
            return 0
        try:
            size = os.fstat(fd).st_size
            end = _drop_torn_tail(fd)
            if self.fsync and end != size:
                os.fsync(fd)
            return size - end
        finally:
            os.close(fd)

    def history_time(self) -> str:
        """When history was last appended to (RFC 3339), without reading it; '' if never."""
        try:
            mtime = os.stat(self.history_path).st_mtime
        except FileNotFoundError:
            return ""
        return rfc3339(mtime)

    def history(self) -> list[dict]:
        try:
            lines = read_regular(self.history_path).splitlines()
        except FileNotFoundError:
            return []
        except NotRegularFile as exc:
            raise IntegrityError(f"{self.history_path}: {exc.strerror}", hint=mf.FSCK_HINT) from None
        except OSError as exc:
            raise Error(f"{self.history_path}: cannot be read: {exc.strerror or exc}", hint=mf.FSCK_HINT) from None
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a torn last line after a crash, or a damaged one; fsck reports it
            if isinstance(event, dict):
                events.append(event)
        return events


def torn_tail(raw: bytes) -> int | None:
    """Where a torn final history line starts, or None when the history ends whole.

    A final line without its newline that still parses is a complete event (kept); one
    that does not parse is what an append cut short (disk full, power loss) left.
    """
    if not raw or raw.endswith(b"\n"):
        return None
    start = raw.rfind(b"\n") + 1
    try:
        if isinstance(json.loads(raw[start:]), dict):
            return None
    except ValueError:
        pass
    except RecursionError:
        return None  # no append leaves this: a damaged line fsck reports, not one to drop
    return start


def _drop_torn_tail(fd: int) -> int:
    """Make the history behind `fd` end with a whole line; returns its new size."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    chunk = 1 << 16
    tail = b""
    while len(tail) < size and b"\n" not in tail:
        take = min(chunk, size - len(tail))
        tail = os.pread(fd, take, size - len(tail) - take) + tail
    start = torn_tail(tail)
    if start is None:  # a complete event that lacks its newline
        os.write(fd, b"\n")
        return size + 1
    end = size - len(tail) + start
    os.ftruncate(fd, end)
    return end


_SUMMARY_TYPES = {"version": int, "deleted": bool, "digest": str, "size": int, "files": int, "created": str,
                  "metadata": (dict, type(None)), "source": (dict, type(None))}


def _well_formed(summary: Summary) -> bool:
    """Whether a cached summary has the types readers rely on (a damaged index is rebuilt)."""
    for key, kind in _SUMMARY_TYPES.items():
        value = getattr(summary, key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return False
    source = summary.source
    return source is None or (all(isinstance(source.get(k), str) for k in ("entity", "project", "name"))
                              and isinstance(source.get("version"), int) and not isinstance(source["version"], bool))


def iter_collection_ids(root: Path):
    """Every collection present under `root/collections`, sorted."""
    base = root / "collections"
    found = []
    for entity in _subdirs(base):
        for project in _subdirs(base / entity):
            for name in _subdirs(base / entity / project):
                if os.path.lexists(base / entity / project / name / "collection.json"):
                    found.append(CollectionId(entity, project, name))
    return sorted(found)


def _subdirs(path: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []
