"""Checking and cleaning a registry: `fsck` and `gc` (SPEC §3 and §5), as one scanner.

A scan reads the registry once (one walk of `objects/`) and yields typed findings:

- **problems** (`Problem`) — stored data that is wrong: a blob whose content or size does
  not match its digest, a writable or missing blob, a manifest that is missing, changed,
  does not parse or whose digest is not the digest of its files, a change record that
  does not parse or leaves a gap, an alias pointing at no live version, a snapshot ahead
  of the records or disagreeing with them, a name claim that does not parse. Any problem
  makes `fsck` exit 1.
- **leftovers** (`Leftover`) — what an interrupted write leaves behind and `gc` removes:
  temporary files, unreferenced blobs, manifests no record names, "linked into" marks with
  no link behind them, locks of dead processes. Each carries its age and how it is
  removed, so fsck lists exactly what gc would remove, and gc removes what is older than
  the grace period. They are normal after a crash and never make `fsck` fail.

A link whose source version was deleted is *dangling*: a state the user made (`rm
--force`), not corruption, listed apart.

Format 2 is scanned through `registry.storage` (claims, change records, manifests,
snapshots); a format-1 registry (0.1.0) is checked read-only by its own code path with
the same finding types, and `gc` refuses it (it would write): upgrade first.

`gc` takes `registry.gc_lock`, waits until no registered writer is alive, scans, and
removes the removable leftovers. It keeps every blob a live version's manifest names; a
manifest that reads but does not parse keeps every digest it mentions, and while any
manifest or change record cannot be read at all, no blob is removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from . import hashing, layout
from . import manifest as mf
from .collections import ALIAS_LINE, INDEX_FORMAT, KINDS, VERSION_FILE, Collection, Summary, torn_tail
from .config import parse_duration
from .errors import Error, IntegrityError, InvalidInput, LockTimeout
from .locks import STALE_REMOTE_SECONDS, FileLock, break_stale, holder_is_dead, lock_wait_seconds, read_record
from .util import host_tag, temp_owner
from .refs import ALIAS_RE, LATEST, NAME_RE, VERSION_RE, CollectionId
from .util import NotRegularFile, read_regular

HEX2 = re.compile(r"[0-9a-f]{2}")
HEX62 = re.compile(r"[0-9a-f]{62}")
HEX64_BYTES = re.compile(rb"[0-9a-f]{64}")
MANIFEST_NAME = re.compile(r"([0-9a-f]{64})\.json")
# gc gives in-flight writers this long to finish; writers wait longer (60 s) for gc.
GC_WRITER_WAIT = 30.0
SHOWN_USERS = 5


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Something stored that is wrong. `kind`: registry, blob, manifest, link, tombstone,
    alias, collection, history or index; `object`: a digest, a ref or a path."""

    kind: str
    object: str
    message: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "object": self.object, "message": self.message}


@dataclass(frozen=True)
class Leftover:
    """Something `gc` can remove. `kind`: blob, tmp, lock, history (format 1), manifest or
    mark (format 2); `object`: its path relative to the registry (a mark: the version's
    ref and the registered model it names).

    The scanner judges each leftover once: `age` (seconds) is what the grace period is
    compared with (a dead holder's lock has no grace: `age` is infinite), `remove` takes
    it away (False: it turned out not to be a leftover after all), and `doubtful` marks
    a temp file that nobody here can judge but by its age (made on another host less
    than ten minutes ago): gc removes it past the grace period, fsck does not list it.
    """

    kind: str
    object: str
    message: str
    bytes: int = 0
    age: float = field(default=float("inf"), compare=False, repr=False)
    remove: Callable[[], object] | None = field(default=None, compare=False, repr=False)
    doubtful: bool = field(default=False, compare=False, repr=False)

    def to_json(self) -> dict:
        return {"kind": self.kind, "object": self.object, "message": self.message, "bytes": self.bytes}


@dataclass(frozen=True)
class FsckResult:
    problems: tuple[Problem, ...]
    reclaimable: tuple[Leftover, ...]
    dangling: tuple[tuple[str, str], ...] = ()  # (link ref, deleted source ref)
    checked: dict = field(default_factory=dict)
    quick: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def reclaimable_bytes(self) -> int:
        return sum(item.bytes for item in self.reclaimable)

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "problems": [p.to_json() for p in self.problems],
            "reclaimable": [r.to_json() for r in self.reclaimable],
            "reclaimable_bytes": self.reclaimable_bytes,
            "dangling": [{"link": link, "source": source} for link, source in self.dangling],
            "checked": dict(self.checked),
            "quick": self.quick,
        }


@dataclass(frozen=True)
class GcResult:
    blobs: int
    bytes: int
    dry_run: bool
    tmp: int = 0
    locks: int = 0
    repaired: int = 0
    kept: int = 0  # unreferenced blobs younger than the grace period
    grace: int = 0  # seconds
    removed: tuple[Leftover, ...] = ()

    def to_json(self) -> dict:
        return {
            "blobs": self.blobs, "bytes": self.bytes, "dry_run": self.dry_run, "tmp": self.tmp,
            "locks": self.locks, "repaired": self.repaired, "kept": self.kept, "grace": self.grace,
            "removed": [r.to_json() for r in self.removed],
        }


# -- shared walking --------------------------------------------------------------------


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        return sorted(os.scandir(path), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _collection_dirs(root: Path):
    """(CollectionId or None, directory) of every directory three levels under collections/."""
    base = root / "collections"
    for entity in _scandir(base):
        if not entity.is_dir(follow_symlinks=False):
            continue
        for project in _scandir(Path(entity.path)):
            if not project.is_dir(follow_symlinks=False):
                continue
            for name in _scandir(Path(project.path)):
                if not name.is_dir(follow_symlinks=False):
                    continue
                valid = all(NAME_RE.fullmatch(p) for p in (entity.name, project.name, name.name))
                yield (CollectionId(entity.name, project.name, name.name) if valid else None), Path(name.path)


def _tree_size(path: Path) -> int:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size
    return sum(_tree_size(Path(e.path)) for e in _scandir(path))


def _tmp_in_flight(name: str, age: float) -> bool | None:
    """Whether a temp file in tmp/ may belong to a running writer, judged by its name.

    True: its writer runs on this host. False: its writer was on this host and is gone.
    None: nobody here can tell (made on another host, or a name that names no owner), so
    only its age can: the grace period. A pid that is alive but older than ten minutes
    is taken for a reused pid, as before: no writer keeps a temp file that long unchanged
    while gc runs, since gc first waits for every registered writer.
    """
    owner = temp_owner(name)
    if owner is None or owner[0] != host_tag():
        return None
    try:
        os.kill(owner[1], 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):
        return False  # no process can have that pid
    except PermissionError:
        pass  # alive, someone else's
    return age < STALE_REMOTE_SECONDS


def _holder(record: dict) -> str:
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')}"


def _users_text(users: list[tuple[str, str, int]]) -> str:
    shown = [f"{ref} ({path})" for ref, path, _ in users[:SHOWN_USERS]]
    more = f" and {len(users) - SHOWN_USERS} more" if len(users) > SHOWN_USERS else ""
    return ", ".join(shown) + more


# -- the scanner -----------------------------------------------------------------------


class _Scanner:
    """What both formats share: findings, one walk of objects/, tmp/ and lock files.

    A subclass checks the collections first and fills `users` (digest -> [(ref, path,
    size)] of every live version's files), `mentioned` (digests a manifest that does not
    parse mentions) and `unreadable` (what could name any blob), then `run` walks the rest.
    `verify` is "full" (re-hash blobs), "quick" (sizes) or "none" (gc: no blob is read).
    """

    def __init__(self, registry, verify: str = "full", on_progress=None) -> None:
        self.reg = registry
        self.root: Path = registry.path
        self.verify = verify
        self.on_progress = on_progress or (lambda n: None)
        self.now = time.time()
        self.problems: list[Problem] = []
        self.leftovers: list[Leftover] = []
        self.dangling: list[tuple[str, str]] = []
        self.users: dict[str, list[tuple[str, str, int]]] = {}
        self.mentioned: set[str] = set()
        self.unreadable: list[str] = []
        self.counts = {"collections": 0, "versions": 0, "links": 0, "tombstones": 0, "aliases": 0,
                       "blobs": 0, "bytes": 0}

    @property
    def quick(self) -> bool:
        return self.verify != "full"

    def rel(self, path: Path | str) -> str:
        return os.path.relpath(path, self.root)

    def problem(self, kind: str, obj: str, message: str) -> None:
        self.problems.append(Problem(kind, obj, message))

    def leftover(self, kind: str, obj: str, message: str, size: int = 0, *, age: float = float("inf"),
                 remove=None, doubtful: bool = False) -> None:
        self.leftovers.append(Leftover(kind, obj, message, size, age, remove, doubtful))

    def check_collections(self) -> None:
        raise NotImplementedError

    def lock_paths(self):
        raise NotImplementedError

    def still_live(self, ref: str) -> bool:
        raise NotImplementedError

    def run(self) -> FsckResult:
        for sub in ("objects", "tmp", "locks"):
            if not (self.root / sub).is_dir():
                self.problem("registry", sub + "/", "directory is missing")
        self.check_collections()
        self.check_blobs()
        self.check_tmp()
        self.check_locks()
        listed = tuple(x for x in self.leftovers if not x.doubtful)
        return FsckResult(tuple(self.problems), listed, tuple(self.dangling), dict(self.counts),
                          self.verify == "quick")

    # -- blobs -----------------------------------------------------------------------

    def check_blobs(self) -> None:
        objects = self.root / "objects"
        found: set[str] = set()
        for top in _scandir(objects):
            if not (HEX2.fullmatch(top.name) and top.is_dir(follow_symlinks=False)):
                self.problem("blob", self.rel(top.path), "unexpected entry in objects/")
                continue
            for entry in _scandir(Path(top.path)):
                if not HEX62.fullmatch(entry.name):
                    self.problem("blob", self.rel(entry.path), "unexpected entry in objects/: not a blob name")
                    continue
                digest = top.name + entry.name
                found.add(digest)
                self.check_blob(digest, Path(entry.path))
        for digest in sorted(set(self.users) - found):
            users = [u for u in self.users[digest] if self.still_live(u[0])]
            if users:  # else every user was deleted (and the blob collected) while we looked
                self.problem("blob", digest, f"missing from the store; needed by {_users_text(users)}")

    def check_blob(self, digest: str, path: Path) -> None:
        where = self.rel(path)
        users = self.users.get(digest, [])
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return  # removed while we looked (a concurrent gc)
        if not stat.S_ISREG(st.st_mode):
            self.problem("blob", digest, f"{where} is not a regular file" + (f"; used by {_users_text(users)}" if users else ""))
            return
        self.counts["blobs"] += 1
        self.counts["bytes"] += st.st_size
        used = f"; used by {_users_text(users)}" if users else "; unreferenced, so gc removes it"
        if st.st_mode & 0o222:
            self.problem("blob", digest, f"writable (mode {stat.S_IMODE(st.st_mode):o}); "
                         f"blobs must be read-only (444){used}")
        if self.verify != "full":
            self.judge_blob(digest, users, used, st.st_size)
        else:
            try:
                actual, size = hashing.hash_file(path)
            except OSError as exc:
                self.problem("blob", digest, f"cannot be read: {exc.strerror}{used}")
                return
            self.on_progress(size)
            if not self.judge_blob(digest, users, used, size, actual):
                return
        if not users and not self.unreadable and digest not in self.mentioned:
            self.leftover("blob", where, "unreferenced blob (no live version uses it)", st.st_size,
                          age=self.now - st.st_mtime, remove=path.unlink)

    def judge_blob(self, digest: str, users: list, used: str, size: int, actual: str | None = None) -> bool:
        """Report what is wrong with a blob of `size` bytes whose content hashes to `actual`
        (None: not hashed, `--quick`, where only sizes are compared); False when damaged."""
        wrong = [u for u in users if u[2] != size]
        if actual is None:
            if wrong:
                self.problem("blob", digest, f"size {size}, expected {wrong[0][2]}{used}")
            return True
        if actual != digest:
            what = f"size {size}, expected {users[0][2]}" if users and users[0][2] != size else \
                "content does not match its digest"
            self.problem("blob", digest, f"{what}{used}")
            return False
        for ref, rel, recorded in wrong:  # the blob is sound: the manifest is wrong
            self.problem("manifest", ref, f"records size {recorded} for {rel}, but its blob {digest[:12]} "
                         f"holds {size} bytes")
        return True

    # -- leftovers -------------------------------------------------------------------

    def temp_file(self, path: Path, what: str = "temporary file of an interrupted write") -> None:
        """A temp file, judged by the host and pid in its name, else by its age."""
        try:
            age = self.now - os.lstat(path).st_mtime
        except FileNotFoundError:
            return
        in_flight = _tmp_in_flight(path.name, age)
        if in_flight:
            return  # its writer runs here right now
        doubtful = in_flight is None and temp_owner(path.name) is not None and age < STALE_REMOTE_SECONDS
        self.leftover("tmp", self.rel(path), f"{what} ({_age(age)} old)", _tree_size(path), age=age,
                      remove=lambda p=path: _remove_tree(p), doubtful=doubtful)

    def check_tmp(self) -> None:
        for entry in _scandir(self.root / "tmp"):
            self.temp_file(Path(entry.path))

    def check_locks(self) -> None:
        from .upgrade import is_guard

        for path, what in self.lock_paths():
            record = read_record(path)
            # upgrade's guards keep 0.1.0 out for good: held, never stale
            if record is None or is_guard(record) or not holder_is_dead(record):
                continue
            if what in ("writer entry", "lock breaker file"):
                remove = (lambda p=path, r=record: _remove_if_same(p, r))
            else:
                remove = (lambda p=path, r=record: break_stale(p, r, self.root / "tmp"))
            message = f"{what} of {_holder(record)}, which is gone" if what == "writer entry" else \
                f"stale {what} of {_holder(record)}, which is gone"
            self.leftover("lock", self.rel(path), message, remove=remove)

    def common_lock_paths(self):
        """Lock-like files under locks/: gc and config locks, .break files, writer entries."""
        locks_dir = self.root / "locks"
        for entry in _scandir(locks_dir):
            if entry.name.endswith(".break"):
                yield Path(entry.path), "lock breaker file"
            elif entry.name.endswith(".lock"):
                yield Path(entry.path), {"gc.lock": "gc lock", "gc-2.lock": "gc lock",
                                         "config.lock": "config lock"}.get(entry.name, "lock")
        for entry in _scandir(locks_dir / "writers"):
            yield Path(entry.path), "writer entry"


# -- format 1 (0.1.0): checked read-only -----------------------------------------------


class _Fsck(_Scanner):
    def __init__(self, registry, verify: str = "full", on_progress=None) -> None:
        super().__init__(registry, verify, on_progress)
        self.where: dict[str, tuple[CollectionId, int]] = {}  # ref -> (collection, number)
        # collection -> {number: record, or None when unreadable}
        self.records: dict[CollectionId, dict[int, mf.Record | None]] = {}
        self.kinds: dict[CollectionId, str] = {}
        self.links: list[tuple[CollectionId, mf.LinkRecord]] = []

    def run(self) -> FsckResult:
        if not (self.root / "collections").is_dir():
            self.problem("registry", "collections/", "directory is missing")
        return super().run()

    def lock_paths(self):
        yield from self.common_lock_paths()
        for _, directory in _collection_dirs(self.root):
            for name, what in (("collection.lock", "collection lock"), ("collection.lock.break", "lock breaker file")):
                path = directory / name
                if os.path.lexists(path):
                    yield path, what

    def still_live(self, ref: str) -> bool:
        cid, number = self.where[ref]
        try:
            return isinstance(Collection(self.root, cid, fsync=False).read(number), mf.VersionManifest)
        except Error:
            return True  # unreadable now: report what we saw

    def check_collections(self) -> None:
        self.check_collections1()
        self.check_links()

    def check_collections1(self) -> None:
        seen: dict[tuple[str, str, str], CollectionId] = {}
        for cid, directory in _collection_dirs(self.root):
            if cid is None:
                self.problem("collection", self.rel(directory), "directory name is not a valid entity, project or name")
                continue
            key = (cid.entity, cid.project, cid.name.casefold())
            # A directory without collection.json is a creation that lost its name claim
            # (or was cut short): invisible, and no clash.
            if key in seen and os.path.lexists(directory / "collection.json"):
                self.problem("collection", self.reg.short(cid),
                             f"name differs from {self.reg.short(seen[key])!r} only by case")
            if os.path.lexists(directory / "collection.json"):
                seen[key] = cid
            self.check_collection(cid, directory)

    def check_collection(self, cid: CollectionId, directory: Path) -> None:
        label = self.reg.short(cid)
        coll = Collection(self.root, cid, fsync=False)
        info_path = directory / "collection.json"
        try:
            info = json.loads(read_regular(info_path))
        except FileNotFoundError:
            if _scandir(coll.versions_dir):
                self.problem("collection", label, "collection.json is missing")
            # else: a collection whose creation was interrupted; invisible and harmless
            return
        except OSError as exc:
            self.problem("collection", label, f"collection.json cannot be read: {exc.strerror or exc}")
            return
        except (ValueError, RecursionError):
            self.problem("collection", label, "collection.json is not valid JSON")
            return
        if not isinstance(info, dict) or info.get("kind") not in KINDS:
            self.problem("collection", label, "collection.json holds no valid kind")
            return
        kind = info["kind"]
        self.kinds[cid] = kind
        self.counts["collections"] += 1
        records = self.check_records(cid, coll, kind)
        self.records[cid] = records
        self.check_aliases(cid, coll, records)
        self.check_history(cid, coll)
        if all(r is not None for r in records.values()):
            self.check_index(cid, coll, records)

    def check_records(self, cid: CollectionId, coll: Collection, kind: str) -> dict[int, mf.Record | None]:
        label = self.reg.short(cid)
        records: dict[int, mf.Record | None] = {}
        for entry in _scandir(coll.versions_dir):
            match = VERSION_FILE.fullmatch(entry.name)
            if not match or entry.name != f"v{int(match.group(1))}.json":
                self.problem("manifest" if kind == "artifact" else "link", label,
                             f"unexpected file versions/{entry.name}")
                continue
            number = int(match.group(1))
            records[number] = self.check_record(cid, coll, kind, number, Path(entry.path))
        numbers = sorted(records)
        missing = sorted(set(range(numbers[-1] + 1)) - set(numbers)) if numbers else []
        if missing:
            shown = ", ".join(f"v{n}" for n in missing[:10]) + (" ..." if len(missing) > 10 else "")
            self.problem("manifest" if kind == "artifact" else "link", label,
                         f"missing {shown}: a deleted version leaves a tombstone, so numbers have no gaps")
        by_content: dict[tuple, int] = {}
        for number in numbers:
            record = records[number]
            key = None
            if isinstance(record, mf.VersionManifest):
                key = (record.digest,)
            elif isinstance(record, mf.LinkRecord):
                key = (record.source, record.source_version)
            if key is None:
                continue
            if key in by_content:
                what = "hold the same files" if kind == "artifact" else "link the same version"
                self.problem("manifest" if kind == "artifact" else "link", self.reg.short(cid, number),
                             f"v{by_content[key]} and v{number} {what}; one should have been reused "
                             "(a lock was broken while its holder was alive?)")
            else:
                by_content[key] = number
        return records

    def check_record(self, cid: CollectionId, coll: Collection, kind: str, number: int, path: Path):
        ref = self.reg.short(cid, number)
        where = self.rel(path)
        try:
            raw = read_regular(path)
        except OSError as exc:
            self.problem("manifest" if kind == "artifact" else "link", ref, f"{where}: cannot be read: {exc.strerror}")
            self.unreadable.append(where)
            return None
        try:
            # The digest is checked below, with a message that says which digest the files have.
            record = mf.parse_record(raw, where, expected_version=number, check_digest=False)
        except IntegrityError as exc:
            self.problem(_record_kind(raw, kind), ref, exc.message)
            self.mentioned.update(m.decode() for m in HEX64_BYTES.findall(raw))
            return None
        if isinstance(record, mf.Tombstone):
            self.counts["tombstones"] += 1
            return record
        if kind == "artifact" and not isinstance(record, mf.VersionManifest):
            self.problem("manifest", ref, f"{where}: a link record in an artifact")
            return None
        if kind == "registered" and not isinstance(record, mf.LinkRecord):
            self.problem("link", ref, f"{where}: a version manifest in a registered model")
            return None
        if isinstance(record, mf.LinkRecord):
            self.counts["links"] += 1
            self.links.append((cid, record))
            return record
        self.counts["versions"] += 1
        bad = False
        if record.artifact != cid:
            self.problem("manifest", ref, f"{where}: names artifact {record.artifact.full}")
            bad = True
        digest = hashing.version_digest([(e.path, e.digest, e.size, e.executable) for e in record.files])
        if digest != record.digest:
            self.problem("manifest", ref, f"{where}: digest {record.digest[:12]} is not the digest of its files "
                         f"({digest[:12]}); the manifest was changed")
            bad = True
        total = sum(e.size for e in record.files)
        if total != record.size:
            self.problem("manifest", ref, f"{where}: size {record.size} is not the sum of its files ({total})")
        self.where[ref] = (cid, number)
        for entry in record.files:
            self.users.setdefault(entry.digest, []).append((ref, entry.path, entry.size))
        return None if bad else record

    def check_aliases(self, cid: CollectionId, coll: Collection, records: dict) -> None:
        label = self.reg.short(cid)
        folded: dict[str, str] = {}
        for entry in _scandir(coll.aliases_dir):
            name = entry.name
            obj = f"{label}:{name}"
            self.counts["aliases"] += 1
            if not ALIAS_RE.fullmatch(name) or VERSION_RE.fullmatch(name) or name in ("none", LATEST) \
                    or name.endswith(".lock"):
                self.problem("alias", obj, f"aliases/{name} is not a valid alias name")
                continue
            if name.casefold() in folded:
                self.problem("alias", obj, f"differs from alias {folded[name.casefold()]!r} only by case")
            folded[name.casefold()] = name
            if not entry.is_file(follow_symlinks=False):
                self.problem("alias", obj, f"aliases/{name} is not a regular file")
                continue
            try:
                text = read_regular(entry.path).decode()
            except (OSError, UnicodeDecodeError):
                self.problem("alias", obj, f"aliases/{name} cannot be read as text")
                continue
            match = ALIAS_LINE.fullmatch(text)
            if not match:
                self.problem("alias", obj, f"aliases/{name} holds {text[:40]!r}, not one line v<N>")
                continue
            number = int(match.group(1))
            if number not in records:
                self.problem("alias", obj, f"points at v{number}, which does not exist")
            elif isinstance(records[number], mf.Tombstone):
                self.problem("alias", obj, f"points at v{number}, which was deleted")

    def check_history(self, cid: CollectionId, coll: Collection) -> None:
        label = self.reg.short(cid)
        try:
            raw = read_regular(coll.history_path)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.problem("history", label, f"history.jsonl cannot be read: {exc.strerror}")
            return
        start = torn_tail(raw)
        if start is not None:
            self.leftover("history", self.rel(coll.history_path),
                          f"a torn final line ({len(raw) - start} bytes) of an interrupted append; "
                          "readers skip it", len(raw) - start)
            raw = raw[:start]
        bad = []
        for number, line in enumerate(raw.splitlines(), 1):
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):
                event = None
            if not (isinstance(event, dict) and isinstance(event.get("event"), str)
                    and isinstance(event.get("time"), str)):
                bad.append(number)
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
            self.problem("history", label, f"history.jsonl line {shown}: not a JSON event")

    def check_index(self, cid: CollectionId, coll: Collection, records: dict) -> None:
        try:
            data = json.loads(read_regular(coll.index_path))
            stamp = os.stat(coll.versions_dir).st_mtime_ns
        except NotRegularFile as exc:
            self.problem("index", self.reg.short(cid), f"{self.rel(coll.index_path)} {exc.strerror}; remove it")
            return
        except (OSError, ValueError, RecursionError):
            return  # no index, or one readers ignore and rebuild
        if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or data.get("stamp") != stamp:
            return  # stale: readers fall back to the manifests and rewrite it
        expected = json.loads(json.dumps([Summary.of(records[n]).to_json() for n in sorted(records)]))
        if data.get("versions") == expected:
            return
        try:
            if os.stat(coll.versions_dir).st_mtime_ns != stamp:
                return  # changed while we looked: stale, not wrong
        except OSError:
            return
        self.problem("index", self.reg.short(cid),
                     f"{self.rel(coll.index_path)} is fresh but does not match the manifests; "
                     "remove it and it is rebuilt")

    def check_links(self) -> None:
        for cid, link in self.links:
            ref = self.reg.short(cid, link.version)
            source_ref = self.reg.short(link.source, link.source_version)
            kind = self.kinds.get(link.source)
            if kind is None:
                self.problem("link", ref, f"its source {source_ref}: no such collection")
                continue
            if kind != "artifact":
                self.problem("link", ref, f"its source {source_ref} is a registered model: links never chain")
                continue
            records = self.records.get(link.source, {})
            if link.source_version not in records:
                self.problem("link", ref, f"its source {source_ref} never existed")
                continue
            source = records[link.source_version]
            if source is None:
                continue  # the source's own problem is reported
            if isinstance(source, mf.Tombstone):
                self.dangling.append((ref, source_ref))
            elif source.digest != link.source_digest:
                self.problem("link", ref, f"records digest {link.source_digest[:12]} but its source {source_ref} "
                             f"holds {source.digest[:12]}")

    # -- blobs -----------------------------------------------------------------------


# -- format 2 --------------------------------------------------------------------------


def _record_time(record: dict) -> float | None:
    try:
        return _parse_rfc3339(record["time"])
    except (KeyError, TypeError, ValueError):
        return None


def _parse_rfc3339(text: str) -> float:
    from datetime import timezone

    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def _normal(doc) -> str:
    return json.dumps(doc, sort_keys=True)


class _Coll2:
    """What the scan learned of one format-2 collection."""

    def __init__(self, cid: CollectionId, kind: str, prefix: str) -> None:
        self.id = cid
        self.kind = kind
        self.prefix = prefix
        self.state = layout.empty_state()
        self.broken = False  # a record is missing or bad: the state is not known
        self.marked_at: dict[tuple[int, str], float | None] = {}  # (version, link) -> time of its mark


class _Scan2(_Scanner):
    """A format-2 registry, read through `registry.storage`."""

    def __init__(self, registry, verify: str = "full", on_progress=None) -> None:
        super().__init__(registry, verify, on_progress)
        self.storage = registry.storage
        self.colls: dict[CollectionId, _Coll2] = {}
        self.where: dict[str, tuple[CollectionId, int]] = {}
        self.extra_locks: list[tuple[Path, str]] = []

    def key_path(self, key: str) -> Path:
        return self.root / key

    def lock_paths(self):
        yield from self.common_lock_paths()
        yield from self.extra_locks

    def still_live(self, ref: str) -> bool:
        cid, number = self.where[ref]
        try:
            summary = self.reg.collection(cid).state(fresh=True)["versions"].get(number)
        except Error:
            return True  # unreadable now: report what we saw
        return summary is not None and not summary.get("deleted")

    def check_collections(self) -> None:
        claims = self.read_claims()
        trees: dict[tuple[str, str, str], list] = {}
        for item in self.storage.list("collections/"):
            parts = item.key.split("/")
            if len(parts) < 5:
                self.problem("collection", item.key, "unexpected file in collections/")
                continue
            trees.setdefault((parts[1], parts[2], parts[3]), []).append(item)
        for (entity, project, name), items in sorted(trees.items()):
            self.check_tree(entity, project, name, items, claims)
        for coll in self.colls.values():
            if coll.kind == "registered" and not coll.broken:
                self.check_links(coll)
        for coll in self.colls.values():
            if coll.kind == "artifact" and not coll.broken:
                self.check_marks(coll)

    def read_claims(self) -> dict[tuple[str, str, str], dict]:
        """(entity, project, folded name) -> claim, for every claim that parses."""
        from .changes import parse_claim
        from .storage import NotRegular

        claims = {}
        for item in self.storage.list("names/"):
            parts = item.key.split("/")
            if len(parts) != 4 or not (NAME_RE.fullmatch(parts[1]) and NAME_RE.fullmatch(parts[2])):
                self.problem("collection", item.key, "unexpected file in names/")
                continue
            try:
                claim = parse_claim(self.storage.read(item.key), item.key)
            except NotRegular:
                self.problem("collection", item.key, "not a regular file")
                self.unreadable.append(item.key)
                continue
            except IntegrityError as exc:
                self.problem("collection", item.key, exc.message.removeprefix(f"{item.key}: "))
                self.unreadable.append(item.key)
                continue
            claims[(parts[1], parts[2], claim["name"].casefold())] = claim
        return claims

    def check_tree(self, entity: str, project: str, name: str, items: list, claims: dict) -> None:
        prefix = layout.collection_prefix(entity, project, name)
        changes_, manifests, snapshot = [], [], None
        for item in items:
            rest = item.key[len(prefix):]
            base = rest.rpartition("/")[2]
            if base.endswith((".lock", ".lock.break")):
                what = "lock breaker file" if base.endswith(".break") else \
                    ("collection lock" if base == "collection.lock" else "lock")
                self.extra_locks.append((self.key_path(item.key), what))
            elif temp_owner(base) is not None:
                self.temp_file(self.key_path(item.key))  # a lock's temp file, made beside it
            elif rest.startswith("changes/"):
                changes_.append(item)
            elif rest.startswith("manifests/"):
                manifests.append(item)
            elif rest == "snapshot.json":
                snapshot = item
            # else: format 1's files, left in an upgraded registry for reference; never read
        if not (changes_ or manifests or snapshot):
            return
        if not all(NAME_RE.fullmatch(p) for p in (entity, project, name)):
            self.problem("collection", prefix, "directory name is not a valid entity, project or name")
            self.protect_all(manifests)
            return
        cid = CollectionId(entity, project, name)
        label = self.reg.short(cid)
        claim = claims.get((entity, project, name.casefold()))
        if claim is None or claim["name"] != name:
            self.problem("collection", label, f"{prefix} has no name claim" +
                         (f" (the name is claimed as {claim['name']!r})" if claim else ""))
            self.protect_all(manifests)
            return
        coll = _Coll2(cid, claim["kind"], prefix)
        self.colls[cid] = coll
        self.counts["collections"] += 1
        snap = self.read_snapshot(snapshot)
        self.check_changes(coll, changes_, snap)
        if coll.broken:
            self.unreadable.append(f"{prefix}changes/")
            self.protect_all(manifests)
            return
        self.check_aliases(coll)
        self.check_duplicates(coll)
        named = {s.get("manifest") for s in coll.state["versions"].values()}
        for number, summary in sorted(coll.state["versions"].items()):
            if summary.get("deleted"):
                self.counts["tombstones"] += 1
            else:
                self.check_manifest(coll, number, summary)
        for item in manifests:
            base = item.key[len(prefix) + len("manifests/"):]
            match = MANIFEST_NAME.fullmatch(base)
            if not match:
                self.problem("manifest", item.key, "unexpected file in manifests/")
            elif match.group(1) not in named:
                self.leftover("manifest", item.key, "manifest no change record names (its writer stopped "
                              "before its commit)", item.size, age=self.now - item.mtime,
                              remove=lambda k=item.key: self.storage.delete(k))

    def protect_all(self, manifests: list) -> None:
        """Blobs of a collection that cannot be judged: every digest its manifests mention."""
        for item in manifests:
            try:
                self.mentioned.update(m.decode() for m in HEX64_BYTES.findall(self.storage.read(item.key)))
            except (OSError, Error):
                self.unreadable.append(item.key)

    def read_snapshot(self, item) -> dict | None:
        """The snapshot as a reader takes it, or None when a reader would ignore it (missing, torn)."""
        if item is None:
            return None
        try:
            data = json.loads(self.storage.read(item.key))
            state = layout.state_from_snapshot(data)
            if data.get("format") != layout.FORMAT or not isinstance(state["seq"], int):
                return None
        except (OSError, Error, ValueError, TypeError, AttributeError, RecursionError, UnicodeDecodeError):
            return None
        return state

    def check_changes(self, coll: _Coll2, items: list, snap: dict | None) -> None:
        from .changes import parse_change
        from .storage import NotRegular

        label = self.reg.short(coll.id)
        expected_snapshot = None
        seqs = []
        for item in items:
            seq = layout.change_seq(item.key)
            if seq is None or item.key != layout.change_key(coll.prefix, seq):
                self.problem("record", item.key, "unexpected file in changes/")
                continue
            seqs.append((seq, item.key))
        for position, (seq, key) in enumerate(sorted(seqs)):
            if seq != position:
                self.problem("record", label, f"change record {position} is missing before {seq}")
                coll.broken = True
                break
            try:
                record = parse_change(self.storage.read(key), key)
            except NotRegular:
                self.problem("record", key, "not a regular file")
                coll.broken = True
                break
            except IntegrityError as exc:
                self.problem("record", key, exc.message.removeprefix(f"{key}: "))
                coll.broken = True
                break
            for number in record.get("add", {}):
                if int(number) in coll.state["versions"]:
                    self.problem("record", key, f"gives number {number} again: numbers are given once")
            layout.fold(coll.state, record)
            for mark in record.get("marks", ()):
                coll.marked_at[(mark["version"], mark["link"])] = _record_time(record)
            if snap is not None and snap["seq"] == seq:
                expected_snapshot = _normal(layout.snapshot_of(coll.state))
        if snap is None or coll.broken:
            return
        where = coll.prefix + "snapshot.json"
        fix = "; remove it and it is rebuilt"
        if snap["seq"] > coll.state["seq"]:
            self.problem("snapshot", where, f"covers change record {snap['seq']}, but the last record is "
                         f"{coll.state['seq']}{fix}")
        elif expected_snapshot is not None and _normal(layout.snapshot_of(snap)) != expected_snapshot:
            self.problem("snapshot", where, f"does not match change records 0 to {snap['seq']}{fix}")

    def check_aliases(self, coll: _Coll2) -> None:
        versions = coll.state["versions"]
        folded: dict[str, str] = {}
        for alias, number in sorted(coll.state["aliases"].items()):
            self.counts["aliases"] += 1
            obj = f"{self.reg.short(coll.id)}:{alias}"
            if alias.casefold() in folded:
                self.problem("alias", obj, f"differs from alias {folded[alias.casefold()]!r} only by case")
            folded.setdefault(alias.casefold(), alias)
            if VERSION_RE.fullmatch(alias) or alias in ("none", LATEST):
                self.problem("alias", obj, "is not a valid alias name")
            elif number not in versions:
                self.problem("alias", obj, f"points at v{number}, which does not exist")
            elif versions[number].get("deleted"):
                self.problem("alias", obj, f"points at v{number}, which was deleted")

    def check_duplicates(self, coll: _Coll2) -> None:
        seen: dict[str, int] = {}
        for number in layout.live_numbers(coll.state):
            summary = coll.state["versions"][number]
            key = _normal([summary.get("digest"), summary.get("source")])
            if key in seen:
                what = "hold the same files" if coll.kind == "artifact" else "link the same version"
                self.problem("manifest" if coll.kind == "artifact" else "link", self.reg.short(coll.id, number),
                             f"v{seen[key]} and v{number} {what}; one should have been reused")
            else:
                seen[key] = number

    def check_manifest(self, coll: _Coll2, number: int, summary: dict) -> None:
        from .storage import KeyMissing, NotRegular

        kind = "manifest" if coll.kind == "artifact" else "link"
        ref = self.reg.short(coll.id, number)
        name = summary.get("manifest")
        if name is None:  # a format-1 tombstone carried over is deleted; a live one needs its manifest
            self.problem(kind, ref, "its change record names no manifest")
            return
        key = layout.manifest_key(coll.prefix, name)
        try:
            raw = self.storage.read(key)
        except KeyMissing:
            self.problem(kind, ref, f"{key} is missing")
            self.unreadable.append(key)
            return
        except (NotRegular, OSError) as exc:
            self.problem(kind, ref, f"{key} cannot be read: {exc.strerror or exc}")
            self.unreadable.append(key)
            return
        changed = hashing.hash_bytes(raw) != name
        try:
            # The digest is checked below, with a message that says which digest the files have.
            record = mf.parse_record(raw, key, number=number, check_digest=False)
        except IntegrityError as exc:
            # One problem per manifest: what is wrong with its content says more than the name.
            self.problem(kind, ref, exc.message)
            self.mentioned.update(m.decode() for m in HEX64_BYTES.findall(raw))
            return
        if changed:
            self.problem(kind, ref, f"{key}: content does not match its name; the manifest was changed")
        if isinstance(record, mf.Tombstone) or isinstance(record, mf.LinkRecord) != (coll.kind == "registered"):
            self.problem(kind, ref, f"{key}: a {type(record).__name__} in a {coll.kind} collection")
            self.mentioned.update(m.decode() for m in HEX64_BYTES.findall(raw))
            return
        if isinstance(record, mf.LinkRecord):
            self.counts["links"] += 1
            source = {"entity": record.source.entity, "project": record.source.project,
                      "name": record.source.name, "version": record.source_version}
            if summary.get("source") != source or summary.get("digest") != record.source_digest:
                self.problem("link", ref, f"{key} links {record.source.full}:v{record.source_version}, "
                             "not what its change record says")
            return
        self.counts["versions"] += 1
        if record.artifact != coll.id:
            self.problem("manifest", ref, f"{key}: names artifact {record.artifact.full}")
        digest = hashing.version_digest([(e.path, e.digest, e.size, e.executable) for e in record.files])
        if digest != record.digest:
            self.problem("manifest", ref, f"{key}: digest {record.digest[:12]} is not the digest of its files "
                         f"({digest[:12]}); the manifest was changed")
        elif record.digest != summary.get("digest"):
            self.problem("manifest", ref, f"{key}: digest {record.digest[:12]} is not the "
                         f"{str(summary.get('digest'))[:12]} its change record gives")
        total = sum(e.size for e in record.files)
        if total != record.size:
            self.problem("manifest", ref, f"{key}: size {record.size} is not the sum of its files ({total})")
        self.where[ref] = (coll.id, number)
        for entry in record.files:
            self.users.setdefault(entry.digest, []).append((ref, entry.path, entry.size))

    def check_links(self, coll: _Coll2) -> None:
        for number in layout.live_numbers(coll.state):
            src = coll.state["versions"][number].get("source")
            ref = self.reg.short(coll.id, number)
            source_id = _collection_id(*(src.get(k) for k in ("entity", "project", "name"))) \
                if isinstance(src, dict) else None
            source_version = src.get("version") if isinstance(src, dict) else None
            if source_id is None or not (isinstance(source_version, int) and not isinstance(source_version, bool)):
                self.problem("link", ref, "its change record names no valid source")
                continue
            source_ref = self.reg.short(source_id, source_version)
            source = self.colls.get(source_id)
            if source is None:
                self.problem("link", ref, f"its source {source_ref}: no such collection")
                continue
            if source.kind != "artifact":
                self.problem("link", ref, f"its source {source_ref} is a registered model: links never chain")
                continue
            if source.broken:
                continue  # the source's own problem is reported
            summary = source.state["versions"].get(source_version)
            if summary is None:
                self.problem("link", ref, f"its source {source_ref} never existed")
            elif summary.get("deleted"):
                self.dangling.append((ref, source_ref))
            elif summary.get("digest") != coll.state["versions"][number].get("digest"):
                self.problem("link", ref, f"records digest {coll.state['versions'][number].get('digest', '')[:12]} "
                             f"but its source {source_ref} holds {summary.get('digest', '')[:12]}")

    def check_marks(self, coll: _Coll2) -> None:
        """"Linked into" marks with no link behind them: a `link` cut short between its two records."""
        for number, targets in sorted(coll.state["marks"].items()):
            wanted = {"entity": coll.id.entity, "project": coll.id.project, "name": coll.id.name, "version": number}
            for full in list(targets):
                target_id = _collection_id(*full.split("/"))
                target = self.colls.get(target_id) if target_id else None
                if target is not None and (target.broken or any(
                        s.get("source") == wanted for s in target.state["versions"].values())):
                    continue  # linked (or not knowable): no leftover
                marked = coll.marked_at.get((number, full))
                age = float("inf") if marked is None else self.now - marked
                self.leftover("mark", f"{self.reg.short(coll.id, number)} -> {full}",
                              f'"linked into {full}" with no link behind it (a link cut short)',
                              age=age, remove=lambda c=coll.id, n=number, f=full: _unmark(self.reg, c, n, f))


def _collection_id(*parts) -> CollectionId | None:
    """The collection that stored names name, or None when they are not three valid names
    (a hand-made record must not lead a reader outside collections/)."""
    if len(parts) != 3 or not all(isinstance(p, str) and NAME_RE.fullmatch(p) for p in parts):
        return None
    return CollectionId(*parts)


def _unmark(registry, cid: CollectionId, number: int, full: str) -> bool:
    """Commit the removal of a "linked into" mark, if its registered model still holds no link."""
    from .changes import Change

    wanted = {"entity": cid.entity, "project": cid.project, "name": cid.name, "version": number}
    target_id = _collection_id(*full.split("/"))
    target = registry.collection(target_id) if target_id else None  # a mark naming no valid model: just go

    def build(state):
        if full not in state["marks"].get(number, []):
            return None, False
        if target is not None and target.exists() and any(
                s.get("source") == wanted for s in target.state(fresh=True)["versions"].values()):
            return None, False  # a link arrived after all
        return Change([], state["aliases"], unmarks=[{"version": number, "link": full}]), True

    return registry.collection(cid).commit(build)[2]


def _record_kind(raw: bytes, collection_kind: str) -> str:
    try:
        data = json.loads(raw)
        if isinstance(data, dict) and "deleted" in data:
            return "tombstone"
    except (ValueError, RecursionError):
        pass
    return "manifest" if collection_kind == "artifact" else "link"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def store_bytes(registry) -> int:
    """The bytes held in objects/ (for a progress bar), from directory entries only."""
    if getattr(registry, "remote", None) is not None:  # a URL: one listing
        return sum(item.size for item in registry.storage.list("objects/"))
    total = 0
    for top in _scandir(registry.path / "objects"):
        for entry in _scandir(Path(top.path)):
            try:
                total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                pass
    return total


def fsck(registry, quick: bool = False, on_progress=None) -> FsckResult:
    """Check every blob, manifest, change record, snapshot, alias and link; change nothing."""
    scanner = _Scan2 if registry.format >= layout.FORMAT else _Fsck
    return scanner(registry, "quick" if quick else "full", on_progress).run()

# -- gc --------------------------------------------------------------------------------


def grace_seconds(registry, grace) -> int:
    """`grace` as seconds: an int, a DURATION string, or None for the config's gc.grace."""
    if grace is None:
        grace = registry.config.get("gc.grace")
    import math

    hint = "use 0 or more seconds, or a DURATION such as 24h"
    if isinstance(grace, bool):
        raise InvalidInput(f"invalid duration {grace!r}", hint=hint)
    if isinstance(grace, (int, float)):
        if not math.isfinite(grace) or grace < 0:  # NaN compares false to everything: test it first
            raise InvalidInput(f"invalid duration {grace!r}", hint=hint)
        return int(grace)
    if not isinstance(grace, str):
        raise InvalidInput(f"invalid duration {grace!r}", hint=hint)
    return parse_duration(grace)

class _Collector:
    def __init__(self, registry, grace: int, dry_run: bool) -> None:
        self.reg = registry
        self.root: Path = registry.path
        self.grace = grace
        self.dry_run = dry_run
        self.removed: list[Leftover] = []
        self.counts = {"blob": 0, "tmp": 0, "lock": 0, "kept": 0}

    def take(self, item: Leftover) -> None:
        if not self.dry_run and item.remove is not None:
            try:
                if item.remove() is False:
                    return  # not a leftover after all: taken again by a live holder, or linked
            except FileNotFoundError:
                return  # someone else removed it first
            except OSError as exc:
                from .store import io_error

                raise io_error(exc, f"removing {item.object}") from None
            except Error as exc:  # a mark's change record could not be committed: next time
                self.reg.notify(f"warning: cannot remove {item.object}: {exc.message}")
                return
        if item.kind in self.counts:
            self.counts[item.kind] += 1
        self.removed.append(item)

    def drain_writers(self) -> None:
        """With the gc lock held: wait until no live writer is registered (SPEC §5)."""
        deadline = time.monotonic() + max(GC_WRITER_WAIT, lock_wait_seconds())
        writers = self.root / "locks" / "writers"
        while True:
            alive = []
            for entry in _scandir(writers):
                path = Path(entry.path)
                record = read_record(path)
                if record is None:
                    continue
                if holder_is_dead(record):
                    self.take(Leftover("lock", self.rel(path), f"writer entry of {_holder(record)}, which is gone",
                                       remove=lambda p=path, r=record: _remove_if_same(p, r)))
                else:
                    alive.append(record)
            if not alive:
                return
            if time.monotonic() >= deadline:
                raise LockTimeout(f"writers are still running ({', '.join(_holder(r) for r in alive[:3])})",
                                  hint="run gc again when they have finished")
            time.sleep(0.02)

    def rel(self, path) -> str:
        return os.path.relpath(path, self.root)

    def scanner(self):
        # No blob is read (verify="none"): gc needs what references what, not whether blobs are sound.
        return _Scan2(self.reg, verify="none")

    def run(self) -> GcResult:
        scan = self.scanner()
        scan.run()
        if scan.unreadable:
            shown = ", ".join(scan.unreadable[:3]) + (f" and {len(scan.unreadable) - 3} more"
                                                      if len(scan.unreadable) > 3 else "")
            self.reg.notify(f"warning: cannot read {shown}, so no blob was removed; run `modelreg fsck`")
        # Blobs first: on a full disk, committing a mark's removal needs the space they free.
        order = {"blob": 0, "tmp": 1, "manifest": 2, "lock": 3, "mark": 4}
        for item in sorted(scan.leftovers, key=lambda x: order.get(x.kind, 5)):
            if item.age >= self.grace:
                self.take(item)
            elif item.kind == "blob":
                self.counts["kept"] += 1
        return GcResult(
            blobs=self.counts["blob"], bytes=sum(r.bytes for r in self.removed), dry_run=self.dry_run,
            tmp=self.counts["tmp"], locks=self.counts["lock"], repaired=0,
            kept=self.counts["kept"], grace=self.grace, removed=tuple(self.removed))


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _remove_if_same(path: Path, record: dict) -> bool:
    if read_record(path) != record:
        return False
    path.unlink()
    return True


def gc(registry, dry_run: bool = False, grace=None) -> GcResult:
    """Remove unreferenced blobs and leftovers older than `grace` (default: gc.grace).

    Format 2 only: the caller refuses a format-1 registry, which only `upgrade` writes.
    """
    seconds = grace_seconds(registry, grace)
    try:
        if dry_run:
            return _Collector(registry, seconds, dry_run=True).run()
        # On a full disk the lock falls back to a symlink and nothing else here writes, so
        # gc can always free the space that its own "disk full" hint sends users to free.
        with FileLock(registry.gc_lock, "gc", tmp_dir=registry.path / "tmp"):
            collector = _Collector(registry, seconds, dry_run=False)
            collector.drain_writers()
            return collector.run()
    except OSError as exc:
        from .store import io_error

        raise io_error(exc, "collecting garbage") from None
