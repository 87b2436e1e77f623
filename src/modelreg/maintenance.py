"""Checking and cleaning a registry: `fsck` and `gc` (SPEC §3 and §5).

`fsck` reads everything and changes nothing. It separates two things:

- **problems** — stored data that is wrong: a blob whose content or size does not match
  its digest, a writable blob, a missing blob, a manifest that does not parse, is unsafe
  or whose digest is not the digest of its entries, an alias pointing nowhere, a history
  line that is not an event, an index cache that is fresh but wrong. Any problem makes
  `fsck` exit 1.
- **reclaimable leftovers** — what an interrupted write leaves behind and `gc` removes:
  files in `tmp/`, unreferenced blobs, lock files (and `.break` files) of dead processes,
  entries of dead writers, a torn final history line. They are normal after a crash and
  never make `fsck` fail.

A link whose source version was deleted is *dangling*: a state the user made (`rm
--force`), not corruption. `fsck` lists dangling links apart and does not fail on them.

`gc` follows SPEC §5: it takes `locks/gc.lock`, waits until no registered writer is
alive, computes what every live version manifest references, and deletes unreferenced
blobs and temporary files older than the grace period, locks of dead holders and torn
history tails. A manifest that cannot be parsed still protects every digest it mentions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import hashing
from . import manifest as mf
from .collections import ALIAS_LINE, INDEX_FORMAT, KINDS, VERSION_FILE, Collection, Summary, torn_tail
from .config import parse_duration
from .errors import Error, IntegrityError, InvalidInput, LockTimeout
from .locks import STALE_REMOTE_SECONDS, FileLock, _break_stale, holder_is_dead, lock_wait_seconds, read_record
from .util import host_tag, temp_owner
from .refs import ALIAS_RE, LATEST, NAME_RE, VERSION_RE, CollectionId
from .util import NotRegularFile, read_regular

HEX2 = re.compile(r"[0-9a-f]{2}")
HEX62 = re.compile(r"[0-9a-f]{62}")
HEX64_BYTES = re.compile(rb"[0-9a-f]{64}")
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
    """Something `gc` can remove. `kind`: blob, tmp, lock or history; `object`: its path
    relative to the registry."""

    kind: str
    object: str
    message: str
    bytes: int = 0

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


def _lock_files(root: Path):
    """(path, what) of every lock-like file: gc.lock, config.lock, .break files, collection locks."""
    locks_dir = root / "locks"
    for entry in _scandir(locks_dir):
        if entry.name.endswith(".break"):
            yield Path(entry.path), "lock breaker file"
        elif entry.name.endswith(".lock"):
            yield Path(entry.path), {"gc.lock": "gc lock", "gc-2.lock": "gc lock",
                                     "config.lock": "config lock"}.get(entry.name, "lock")
    for _, directory in _collection_dirs(root):
        for name, what in (("collection.lock", "collection lock"), ("collection.lock.break", "lock breaker file")):
            path = directory / name
            if os.path.lexists(path):
                yield path, what


def _holder(record: dict) -> str:
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')}"


def _users_text(users: list[tuple[str, str, int]]) -> str:
    shown = [f"{ref} ({path})" for ref, path, _ in users[:SHOWN_USERS]]
    more = f" and {len(users) - SHOWN_USERS} more" if len(users) > SHOWN_USERS else ""
    return ", ".join(shown) + more


# -- fsck ------------------------------------------------------------------------------


class _Fsck:
    def __init__(self, registry, quick: bool, on_progress=None) -> None:
        self.reg = registry
        self.root: Path = registry.path
        self.quick = quick
        self.on_progress = on_progress or (lambda n: None)
        self.problems: list[Problem] = []
        self.leftovers: list[Leftover] = []
        self.dangling: list[tuple[str, str]] = []
        # digest -> [(ref, path, size)] of every live version manifest's files
        self.users: dict[str, list[tuple[str, str, int]]] = {}
        # What gc keeps although no readable manifest names it (see _Collector.referenced):
        # every hex digest in a record that does not parse, and everything while one cannot be read.
        self.mentioned: set[str] = set()
        self.unreadable = False
        self.where: dict[str, tuple[CollectionId, int]] = {}  # ref -> (collection, number)
        # collection -> {number: record, or None when unreadable}
        self.records: dict[CollectionId, dict[int, mf.Record | None]] = {}
        self.kinds: dict[CollectionId, str] = {}
        self.links: list[tuple[CollectionId, mf.LinkRecord]] = []
        self.counts = {"collections": 0, "versions": 0, "links": 0, "tombstones": 0, "aliases": 0,
                       "blobs": 0, "bytes": 0}

    def rel(self, path: Path | str) -> str:
        return os.path.relpath(path, self.root)

    def problem(self, kind: str, obj: str, message: str) -> None:
        self.problems.append(Problem(kind, obj, message))

    def leftover(self, kind: str, path: Path, message: str, size: int = 0) -> None:
        self.leftovers.append(Leftover(kind, self.rel(path), message, size))

    def run(self) -> FsckResult:
        for sub in ("objects", "tmp", "locks", "collections"):
            if not (self.root / sub).is_dir():
                self.problem("registry", sub + "/", "directory is missing")
        self.check_collections()
        self.check_links()
        self.check_blobs()
        self.check_tmp()
        self.check_locks()
        return FsckResult(tuple(self.problems), tuple(self.leftovers), tuple(self.dangling), dict(self.counts),
                          self.quick)

    # -- collections -----------------------------------------------------------------

    def check_collections(self) -> None:
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
            self.unreadable = True
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
            self.leftover("history", coll.history_path,
                          f"a torn final line ({len(raw) - start} bytes) of an interrupted append; "
                          "the next change or gc removes it", len(raw) - start)
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

    def still_live(self, ref: str) -> bool:
        cid, number = self.where[ref]
        try:
            return isinstance(Collection(self.root, cid, fsync=False).read(number), mf.VersionManifest)
        except Error:
            return True  # unreadable now: report what we saw

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
        if self.quick:
            wrong = [u for u in users if u[2] != st.st_size]
            if wrong:
                self.problem("blob", digest, f"size {st.st_size}, expected {wrong[0][2]}{used}")
        else:
            try:
                actual, size = hashing.hash_file(path)
            except OSError as exc:
                self.problem("blob", digest, f"cannot be read: {exc.strerror}{used}")
                return
            self.on_progress(size)
            if actual != digest:
                what = f"size {size}, expected {users[0][2]}" if users and users[0][2] != size else \
                    "content does not match its digest"
                self.problem("blob", digest, f"{what}{used}")
                return
            wrong = [u for u in users if u[2] != size]
            for ref, rel, recorded in wrong:
                self.problem("manifest", ref, f"records size {recorded} for {rel}, but its blob {digest[:12]} "
                             f"holds {size} bytes")
        if not users and not self.unreadable and digest not in self.mentioned:
            self.leftover("blob", path, "unreferenced blob (no live version uses it)", st.st_size)

    # -- leftovers -------------------------------------------------------------------

    def check_tmp(self) -> None:
        now = time.time()
        for entry in _scandir(self.root / "tmp"):
            try:
                age = now - os.lstat(entry.path).st_mtime
            except FileNotFoundError:
                continue
            in_flight = _tmp_in_flight(entry.name, age)
            if in_flight or (in_flight is None and temp_owner(entry.name) and age < STALE_REMOTE_SECONDS):
                continue  # in flight right now, here or (young, from another host) elsewhere
            self.leftover("tmp", Path(entry.path), f"temporary file of an interrupted write ({_age(age)} old)",
                          _tree_size(Path(entry.path)))

    def check_locks(self) -> None:
        for path, what in _lock_files(self.root):
            record = read_record(path)
            if record is not None and holder_is_dead(record):
                self.leftover("lock", path, f"stale {what} of {_holder(record)}, which is gone")
        for entry in _scandir(self.root / "locks" / "writers"):
            record = read_record(Path(entry.path))
            if record is not None and holder_is_dead(record):
                self.leftover("lock", Path(entry.path), f"writer entry of {_holder(record)}, which is gone")


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
    total = 0
    for top in _scandir(registry.path / "objects"):
        for entry in _scandir(Path(top.path)):
            try:
                total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                pass
    return total


def fsck(registry, quick: bool = False, on_progress=None) -> FsckResult:
    """Check every blob, manifest, link, tombstone, alias, history and index file."""
    return _Fsck(registry, quick, on_progress).run()


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
        self.counts = {"blob": 0, "tmp": 0, "lock": 0, "history": 0, "kept": 0}

    def rel(self, path) -> str:
        return os.path.relpath(path, self.root)

    def take(self, kind: str, path: Path, message: str, size: int, remove) -> None:
        if not self.dry_run:
            try:
                if remove() is False:
                    return  # not ours after all: taken again by a live holder
            except FileNotFoundError:
                return  # someone else removed it first
            except OSError as exc:
                from .store import io_error

                raise io_error(exc, f"removing {self.rel(path)}") from None
        self.counts[kind] += 1
        self.removed.append(Leftover(kind, self.rel(path), message, size))

    def drain_writers(self) -> None:
        """With gc.lock held: wait until no live writer is registered (SPEC §5)."""
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
                    self.take("lock", path, f"writer entry of {_holder(record)}, which is gone", 0,
                              lambda p=path: p.unlink())
                else:
                    alive.append(record)
            if not alive:
                return
            if time.monotonic() >= deadline:
                raise LockTimeout(f"writers are still running ({', '.join(_holder(r) for r in alive[:3])})",
                                  hint="run gc again when they have finished")
            time.sleep(0.02)

    def referenced(self) -> set[str]:
        """Every blob digest a live version manifest names.

        A record that does not parse protects every 64-hex string it contains: gc must
        never be the one to lose data that a repaired manifest would have needed. A
        version record that cannot be read at all (not a regular file, an I/O error)
        could name any blob: it is listed in `self.unreadable`, and then no blob is
        removed in this run.
        """
        refs: set[str] = set()
        self.unreadable: list[str] = []
        for _, directory in _collection_dirs(self.root):
            for entry in _scandir(directory / "versions"):
                try:
                    raw = read_regular(entry.path)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    if VERSION_FILE.fullmatch(entry.name) or not isinstance(exc, NotRegularFile):
                        self.unreadable.append(f"{self.rel(entry.path)} ({exc.strerror or exc})")
                    continue  # else a stray directory or FIFO, which no reader takes for a record
                try:
                    record = mf.parse_record(raw, entry.path, check_digest=False)
                except IntegrityError:
                    refs.update(m.decode() for m in HEX64_BYTES.findall(raw))
                    continue
                if isinstance(record, mf.VersionManifest):
                    refs.update(f.digest for f in record.files)
        return refs

    def run(self) -> GcResult:
        now = time.time()
        refs = self.referenced()
        if self.unreadable:
            shown = ", ".join(self.unreadable[:3]) + (f" and {len(self.unreadable) - 3} more" if len(self.unreadable) > 3 else "")
            self.reg.notify(f"warning: cannot read {shown}, so no blob was removed; run `modelreg fsck`")
        for top in _scandir(self.root / "objects"):
            if not (HEX2.fullmatch(top.name) and top.is_dir(follow_symlinks=False)):
                continue
            for entry in _scandir(Path(top.path)):
                digest = top.name + entry.name
                if not HEX62.fullmatch(entry.name) or digest in refs or self.unreadable:
                    continue
                path = Path(entry.path)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                if now - st.st_mtime >= self.grace:
                    self.take("blob", path, "unreferenced blob", st.st_size, path.unlink)
                else:
                    self.counts["kept"] += 1
        for entry in _scandir(self.root / "tmp"):
            path = Path(entry.path)
            try:
                age = now - os.lstat(path).st_mtime
            except FileNotFoundError:
                continue
            # Dead here, or an owner nobody here can ask: then the grace period alone decides.
            if age >= self.grace and not _tmp_in_flight(entry.name, age):
                self.take("tmp", path, "temporary file of an interrupted write", _tree_size(path),
                          lambda p=path: _remove_tree(p))
        self.collect_locks()
        self.repair_histories()
        return GcResult(
            blobs=self.counts["blob"], bytes=sum(r.bytes for r in self.removed), dry_run=self.dry_run,
            tmp=self.counts["tmp"], locks=self.counts["lock"], repaired=self.counts["history"],
            kept=self.counts["kept"], grace=self.grace, removed=tuple(self.removed))

    def collect_locks(self) -> None:
        if self.dry_run:
            for entry in _scandir(self.root / "locks" / "writers"):
                record = read_record(Path(entry.path))
                if record is not None and holder_is_dead(record):
                    self.take("lock", Path(entry.path), f"writer entry of {_holder(record)}", 0, None)
        for path, what in _lock_files(self.root):
            if path == self.reg.gc_lock and not self.dry_run:
                continue  # ours
            record = read_record(path)
            if record is None or not holder_is_dead(record):
                continue
            message = f"stale {what} of {_holder(record)}"
            if path.name.endswith(".break"):
                self.take("lock", path, message, 0, lambda p=path, r=record: _remove_if_same(p, r))
            elif path.name == "collection.lock":
                coll = self.reg.collection(self._cid(path.parent))
                # Taking the lock breaks the stale one the usual way, recorded in the history.
                self.take("lock", path, message, 0, lambda c=coll: self._lock_and_repair(c))
            else:
                self.take("lock", path, message, 0, lambda p=path, r=record: _break_stale(p, r, self.root / "tmp"))

    def _cid(self, directory: Path) -> CollectionId:
        return CollectionId(directory.parent.parent.name, directory.parent.name, directory.name)

    def _lock_and_repair(self, coll: Collection) -> None:
        with coll.lock(self.reg._on_break(coll)):
            coll.repair_history()

    def repair_histories(self) -> None:
        for cid, directory in _collection_dirs(self.root):
            if cid is None:
                continue
            path = directory / "history.jsonl"
            try:
                raw = read_regular(path)
            except OSError:
                continue
            start = torn_tail(raw)
            if start is None:
                continue
            coll = self.reg.collection(cid)
            message = f"torn final history line ({len(raw) - start} bytes)"
            self.take("history", path, message, len(raw) - start, lambda c=coll: self._lock_and_repair(c))


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
    """Remove unreferenced blobs and leftovers older than `grace` (default: gc.grace)."""
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
