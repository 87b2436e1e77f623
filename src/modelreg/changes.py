"""One collection in format 2: its name claim, change records, manifests and snapshot.

Every change of a collection — versions or links made visible, aliases set, moved or
removed, versions deleted — is one create-only write of the next change record
(`changes/<seq>.json`), holding its events, the complete alias map after it and a
random transaction id. Whoever creates record N first wins; a writer that finds N taken
reads it: its own transaction id there means it won (the answer to its create was lost),
otherwise it re-reads, re-checks against the new state and tries N+1. Version and link
numbers are given by the record that makes them visible. Manifests are written before
their record, named by the BLAKE3 of their bytes, so a record names exactly one
manifest. The snapshot is derived: rewritten after a commit, never moved backward, and a
reader that finds it missing, torn or behind only reads more records.

The same protocol runs on any `storage.Storage`; nothing here assumes a filesystem.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

from . import layout, provenance
from . import manifest as mf
from .collections import Summary
from .errors import Conflict, Error, IntegrityError, NotFound
from .refs import CollectionId
from .storage import KeyMissing, NotRegular, Storage
from .util import now

SNAPSHOT_TRIES = 3
# A writer claims a name right before its first commit: a claim this old with no record
# behind it was left by a writer killed in between.
CLAIM_STALE_SECONDS = 600


def dumps(doc: dict) -> bytes:
    return (json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


# -- validating what is read -----------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_change(raw: bytes, key: str) -> dict:
    """A change record, checked; IntegrityError on anything a writer would not write."""
    def fail(message: str) -> IntegrityError:
        return IntegrityError(f"{key}: {message}", hint="run `modelreg fsck`")

    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise fail("not valid JSON") from None
    if not isinstance(record, dict) or record.get("format") != layout.FORMAT:
        raise fail("not a format-2 change record")
    seq = layout.change_seq(key)
    if record.get("seq") != seq or not _is_int(seq):
        raise fail(f"holds seq {record.get('seq')!r}, expected {seq}")
    if not isinstance(record.get("txid"), str):
        raise fail("has no transaction id")
    events = record.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, dict) and isinstance(e.get("event"), str)
                                               for e in events):
        raise fail("events are not a list of events")
    add = record.get("add", {})
    if not isinstance(add, dict):
        raise fail("'add' is not an object")
    for number, summary in add.items():
        if not (isinstance(number, str) and number.isdigit() and isinstance(summary, dict)
                and (summary.get("deleted") is True  # upgraded from a format-1 tombstone
                     or isinstance(summary.get("manifest"), str) and layout.HEX64_RE.fullmatch(summary["manifest"]))
                and isinstance(summary.get("digest"), str) and layout.HEX64_RE.fullmatch(summary["digest"])):
            raise fail(f"version {number!r} is not a valid summary")
    delete = record.get("delete", [])
    if not isinstance(delete, list) or not all(_is_int(n) for n in delete):
        raise fail("'delete' is not a list of version numbers")
    aliases = record.get("aliases", {})
    if not isinstance(aliases, dict) or not all(
            isinstance(a, str) and layout.ALIAS_RE.fullmatch(a) and _is_int(n) for a, n in aliases.items()):
        raise fail("'aliases' is not a map of alias to version number")
    if not _is_int(record.get("next", 0)):
        raise fail("'next' is not a version number")
    for field in ("marks", "unmarks"):
        marks = record.get(field, [])
        if not isinstance(marks, list) or not all(
                isinstance(m, dict) and _is_int(m.get("version")) and isinstance(m.get("link"), str) for m in marks):
            raise fail(f"'{field}' is not a list of links")
    return record


def parse_claim(raw: bytes, key: str) -> dict:
    try:
        claim = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        claim = None
    if not (isinstance(claim, dict) and isinstance(claim.get("name"), str) and layout.NAME_RE.fullmatch(claim["name"])
            and claim.get("kind") in layout.KINDS and key.rpartition("/")[2] == claim["name"].casefold() + ".json"):
        raise IntegrityError(f"{key}: not a valid name claim", hint="run `modelreg fsck`")
    return claim


def summary_of(record: mf.Record, manifest: str) -> dict:
    """What a change record keeps of a version: enough for `ls NAME` without its manifest."""
    if isinstance(record, mf.LinkRecord):
        src = record.to_json()["source"]
        return {"manifest": manifest, "digest": record.source_digest, "created": record.created, "source": src}
    return {"manifest": manifest, "digest": record.digest, "size": record.size, "files": len(record.files),
            "created": record.created, "metadata": record.metadata}


@dataclass
class Change:
    """What a writer wants to commit; the engine adds seq, txid, time, user and host."""

    events: list
    aliases: dict
    add: dict | None = None  # number -> summary
    delete: list | None = None
    marks: list | None = None
    unmarks: list | None = None
    next: int | None = None


class Collection:
    """A format-2 collection; the read methods match format 1's `collections.Collection`.

    Format 1 can leave out one unreadable version file (`tolerant`, `broken`); here a
    version's summary lives in the records, so only its manifest can be bad, and that
    fails only what reads it.
    """

    tolerant = False
    broken: dict = {}

    def __init__(self, storage: Storage, cid: CollectionId) -> None:
        self.storage = storage
        self.id = cid
        self.prefix = layout.collection_prefix(cid.entity, cid.project, cid.name)
        self.claim_key = layout.claim_key(cid.entity, cid.project, cid.name)
        self._claim: dict | None = None
        self._state: dict | None = None
        self._snapshot: tuple | None = None  # read for claim(), kept for the state() that follows

    # -- the claim -------------------------------------------------------------------

    def claim(self) -> dict | None:
        """The claim of this name (which may be spelled differently), or None.

        The snapshot carries its collection's claim: on an object store, where each read
        is a request, a reader (which needs the snapshot next anyway) reads it first and
        the claim only when the snapshot has none. On a disk the claim itself is read, so
        a damaged claim file is reported by every command that reads the collection.
        """
        if self._claim is None and self._state is None and self.storage.local_path() is None:
            if self._snapshot is None:
                self._snapshot = self._read_snapshot()
            carried = self._snapshot[3]
            if carried is not None:
                self._claim = carried
                return carried
        if self._claim is None:
            try:
                raw = self.storage.read(self.claim_key)
            except KeyMissing:
                return None
            except NotRegular:
                raise IntegrityError(f"{self.claim_key}: not a regular file", hint="run `modelreg fsck`") from None
            self._claim = parse_claim(raw, self.claim_key)
        return self._claim

    def exists(self) -> bool:
        claim = self.claim()
        return claim is not None and claim["name"] == self.id.name

    @property
    def info(self) -> dict:
        claim = self.claim()
        if claim is None or claim["name"] != self.id.name:
            raise NotFound(f"no collection named {self.id.full!r}")
        return claim

    @property
    def kind(self) -> str:
        return self.info["kind"]

    def ensure(self, kind: str) -> None:
        """Claim the name for `kind` unless claimed; a clash of case or kind is a conflict.

        One create-only write of the case-folded name decides, so two machines creating
        `Foo` and `foo` at once never both succeed. A claim whose collection never got a
        record and that is older than CLAIM_STALE_SECONDS was left by a writer killed
        between the two (a writer claims only right before it commits): it is taken over
        by replace-if-unchanged, so of several takers one wins.
        """
        mine = {"format": layout.FORMAT, "name": self.id.name, "kind": kind, "created": now()}
        claim = self.claim()
        if claim is None:
            self.storage.create(self.claim_key, dumps(mine))
            self._claim = None
            claim = self.claim()
            if claim is None:
                raise Error(f"cannot claim the name {self.id.full!r}")
        if (claim["name"], claim["kind"]) != (self.id.name, kind) and self._abandoned(claim):
            _, token = self.storage.read_token(self.claim_key)
            self.storage.replace(self.claim_key, dumps(mine), token)
            self._claim = None
            claim = self.claim() or claim
        if claim["name"] != self.id.name:
            raise Conflict(f"collection {claim['name']!r} already exists; names may not differ only by case",
                           hint="collection names of one project may not differ only by case")
        if claim["kind"] != kind:
            what = "an artifact" if claim["kind"] == "artifact" else "a registered model"
            raise Conflict(f"{self.id.name!r} is already {what} in project {self.id.project!r}",
                           hint="collection names are unique within a project across both kinds")

    def _abandoned(self, claim: dict) -> bool:
        """A claim whose collection never got a record, and old enough that its writer is gone."""
        from datetime import datetime, timezone

        try:
            made = datetime.strptime(claim.get("created", ""), "%Y-%m-%dT%H:%M:%S.%fZ")
        except (TypeError, ValueError):
            try:
                made = datetime.strptime(claim.get("created", ""), "%Y-%m-%dT%H:%M:%SZ")
            except (TypeError, ValueError):
                return False
        age = datetime.now(timezone.utc).replace(tzinfo=None) - made
        if age.total_seconds() < CLAIM_STALE_SECONDS:
            return False
        other = layout.collection_prefix(self.id.entity, self.id.project, claim["name"])
        return not self.storage.list(layout.changes_prefix(other))

    # -- state -----------------------------------------------------------------------

    def _read_snapshot(self) -> tuple[dict, str | None, int, dict | None]:
        """(state, token, seq of the snapshot, the claim it carries) — an empty state when
        it is missing or bad."""
        key = layout.snapshot_key(self.prefix)
        try:
            raw, token = self.storage.read_token(key)
        except (KeyMissing, NotRegular):
            return layout.empty_state(), None, -1, None
        try:
            data = json.loads(raw)
            state = layout.state_from_snapshot(data)
            if data.get("format") != layout.FORMAT or not isinstance(state["seq"], int):
                raise ValueError
        except (ValueError, TypeError, AttributeError, RecursionError, UnicodeDecodeError):
            return layout.empty_state(), token, -2, None  # torn or foreign: rebuilt from the records
        claim = data.get("claim")
        try:
            # Only a claim of this very name: a claim of `Foo` lives in Foo's snapshot.
            claim = parse_claim(json.dumps(claim).encode(), self.claim_key) if claim is not None else None
        except IntegrityError:
            claim = None
        if claim is not None and claim["name"] != self.id.name:
            claim = None
        return state, token, state["seq"], claim

    def _apply_after(self, state: dict) -> dict:
        """Fold every record after `state['seq']` into it."""
        after = layout.change_key(self.prefix, state["seq"]) if state["seq"] >= 0 else None
        for item in self.storage.list(layout.changes_prefix(self.prefix), start_after=after):
            seq = layout.change_seq(item.key)
            if seq is None:
                continue  # not a record (fsck reports it)
            if seq != state["seq"] + 1:
                raise IntegrityError(f"{self.prefix}changes/: record {state['seq'] + 1} is missing before {seq}",
                                     hint="run `modelreg fsck`")
            layout.fold(state, self._read_change(item.key))
        return state

    def _read_change(self, key: str) -> dict:
        try:
            raw = self.storage.read(key)
        except NotRegular:
            raise IntegrityError(f"{key}: not a regular file", hint="run `modelreg fsck`") from None
        return parse_change(raw, key)

    def state(self, fresh: bool = False) -> dict:
        if self._state is None or fresh:
            snapshot, self._snapshot = self._snapshot, None
            state = (snapshot if snapshot is not None and not fresh else self._read_snapshot())[0]
            self._state = self._apply_after(state)
        return self._state

    def records(self) -> list[dict]:
        """Every change record, in sequence (history and fsck)."""
        found = []
        for item in self.storage.list(layout.changes_prefix(self.prefix)):
            if layout.change_seq(item.key) is not None:
                found.append(self._read_change(item.key))
        return found

    # -- the read API shared with format 1 ---------------------------------------------

    def summaries(self) -> list[Summary]:
        result = []
        for number, s in sorted(self.state()["versions"].items()):
            result.append(Summary(number, bool(s.get("deleted")), s["digest"], s.get("size", 0), s.get("files", 0),
                                  s.get("created", ""), s.get("metadata") if "source" not in s else None,
                                  s.get("source")))
        return result

    def numbers(self) -> list[int]:
        """Every version number given, deleted ones included, ascending."""
        return sorted(self.state()["versions"])

    def live(self) -> list[Summary]:
        return [s for s in self.summaries() if not s.deleted]

    def latest(self) -> int | None:
        numbers = layout.live_numbers(self.state())
        return numbers[-1] if numbers else None

    def aliases(self) -> dict[str, int]:
        return dict(sorted(self.state()["aliases"].items()))

    def marks(self) -> dict[int, list[str]]:
        return self.state()["marks"]

    def history_time(self) -> str:
        return self.state()["updated"]

    def is_live(self) -> bool:
        return layout.is_live_collection(self.state())

    def history(self) -> list[dict]:
        events = []
        for record in self.records():
            for event in record.get("events", ()):
                item = dict(event)
                item.setdefault("time", record.get("time"))
                item.setdefault("user", record.get("user"))
                if not record.get("upgraded"):  # events carried over from format 1 never had a host
                    item.setdefault("host", record.get("host"))
                events.append(item)
        return events

    def read(self, number: int) -> mf.Record:
        summary = self.state()["versions"].get(number)
        if summary is None:
            raise NotFound(f"{self.id.name}:v{number} does not exist")
        if summary.get("deleted"):
            return mf.Tombstone(number, summary["digest"], summary.get("deleted_at", ""))
        return self.read_manifest(summary["manifest"], number)

    def read_manifest(self, digest: str, number: int) -> mf.Record:
        key = layout.manifest_key(self.prefix, digest)
        try:
            raw = self.storage.read(key)
        except KeyMissing:
            raise IntegrityError(f"{key}: the manifest of {self.id.name}:v{number} is missing",
                                 hint="run `modelreg fsck`") from None
        except NotRegular:
            raise IntegrityError(f"{key}: not a regular file", hint="run `modelreg fsck`") from None
        from .hashing import hash_bytes

        if hash_bytes(raw) != digest:
            raise IntegrityError(f"{key}: content does not match its name; the manifest was changed",
                                 hint="run `modelreg fsck`")
        record = mf.parse_record(raw, key, number=number)
        kind = self.kind
        if isinstance(record, mf.Tombstone) or isinstance(record, mf.LinkRecord) != (kind == "registered"):
            raise IntegrityError(f"{key}: record does not match the collection's kind")
        if isinstance(record, mf.VersionManifest) and record.artifact != self.id:
            raise IntegrityError(f"{key}: belongs to {record.artifact.full}")
        return record

    # -- writing ---------------------------------------------------------------------

    def put_manifest(self, record: mf.Record) -> str:
        """Store a manifest (or link record) before the record that names it; its name."""
        from .hashing import hash_bytes

        data = mf.dumps(record, format=layout.FORMAT)
        digest = hash_bytes(data)
        self.storage.create(layout.manifest_key(self.prefix, digest), data)  # equal bytes may exist: same name
        return digest

    def discard_manifest(self, digest: str) -> None:
        """Remove a manifest this writer stored for a change it then did not commit (it lost
        the race to an equal version, or was refused), unless a record names it after all."""
        try:
            if any(s.get("manifest") == digest for s in self.state(fresh=True)["versions"].values()):
                return
            self.storage.delete(layout.manifest_key(self.prefix, digest))
        except (OSError, Error):
            pass  # a leftover: fsck lists it, gc removes it

    def commit_storing(self, build, stored: list):
        """`commit(build)` for a build that may store a manifest first (its name appended to
        `stored`): a manifest no committed record names is removed again, so that losing a
        race or being refused leaves nothing behind."""
        try:
            state, record, result = self.commit(build)
        except BaseException:
            if stored:
                self.discard_manifest(stored[0])
            raise
        if stored and (record is None or stored[0] not in {s.get("manifest") for s in record.get("add", {}).values()}):
            self.discard_manifest(stored[0])
        return state, record, result

    def commit(self, build):
        """Commit what `build(state)` asks for as the next change record.

        `build` returns (Change or None, result); it is called again, with the new state,
        whenever another writer committed first, so it must re-check everything it
        decides on (duplicates, --expect, protection). Returns (state, record, result).
        """
        state = self.state(fresh=True)
        while True:
            change, result = build(state)
            if change is None:
                return state, None, result
            seq = state["seq"] + 1
            stamp = now()
            record = {"format": layout.FORMAT, "seq": seq, "txid": os.urandom(16).hex(), "time": stamp,
                      "user": provenance.user(), "host": socket.gethostname(),
                      "events": list(change.events),
                      "aliases": dict(sorted(change.aliases.items()))}
            for field in ("add", "delete", "marks", "unmarks"):
                value = getattr(change, field)
                if value:
                    record[field] = value
            given = [int(n) for n in (change.add or {})]
            record["next"] = max([state["next"], *(n + 1 for n in given)]) if change.next is None else change.next
            key = layout.change_key(self.prefix, seq)
            if self._publish(key, record):
                new = layout.fold(_copy_state(state), record)
                self._state = new
                self._save_snapshot(new)
                return new, record, result
            state = self._apply_after(state)

    def _publish(self, key: str, record: dict) -> bool:
        """Create record `key`; True when it is ours (also when the answer was lost)."""
        try:
            if self.storage.create(key, dumps(record)):
                return True
        except Error:
            pass  # no answer: it may have been created; the record itself tells
        try:
            there = self._read_change(key)
        except KeyMissing:
            return False  # not created after all: the caller re-reads and tries again
        return there.get("txid") == record["txid"]

    def _save_snapshot(self, state: dict) -> None:
        """Move the snapshot forward to `state`, never backward; a cache, so errors are ignored."""
        key = layout.snapshot_key(self.prefix)
        try:
            data = dumps(layout.snapshot_of(state, self.claim()))
            for _ in range(SNAPSHOT_TRIES):
                _, token, seq, _ = self._read_snapshot()
                if seq >= state["seq"]:
                    return
                if self.storage.replace(key, data, token):
                    return
        except (OSError, Error):
            pass


def _copy_state(state: dict) -> dict:
    return {**state, "versions": dict(state["versions"]), "aliases": dict(state["aliases"]),
            "marks": {k: list(v) for k, v in state["marks"].items()}}
