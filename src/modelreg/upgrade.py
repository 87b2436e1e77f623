"""`modelreg upgrade`: a format-1 registry (0.1.0) becomes format 2 (SPEC §5).

In order, each step idempotent, so that a kill anywhere leaves a registry that the next
`upgrade` finishes and that every reader reads the same before and after:

1. Stop 0.1.0 writers. Take 0.1.0's `locks/gc.lock` (a 0.1.0 writer registers, sees it
   and waits), wait until `locks/writers/` holds no live writer, then hold every
   `collection.lock` under a holder 0.1.0 can never judge stale (another host, taken in
   the year 2100). A 0.1.0 process still running afterwards waits for these and exits 4;
   it never writes.
2. Write each collection in format 2: its name claim, each live version's manifest
   (named by its BLAKE3), and record 0 carrying every version (deleted ones as deleted),
   the aliases, the links made to it, and the events of `history.jsonl`.
3. Set `format = 2` in config.toml, last. Until then the registry is format 1 to every
   reader; afterwards format-2 readers ignore the format-1 files, which stay for reference.

The gc lock and the collection locks are left in place for good: they are what keeps a
0.1.0 process from ever writing to the registry again.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from . import layout, provenance
from . import manifest as mf
from .changes import Collection as Collection2, dumps, summary_of
from .collections import Collection as Collection1, iter_collection_ids
from .errors import Error, LockTimeout
from .locks import FileLock, live_writers
from .storage import FsStorage
from .util import now, replace_file

# A holder 0.1.0 reads as "another host, taken in 2100": never stale, always waited for.
GUARD = {"host": "modelreg-upgrade.invalid", "pid": 0, "pstart": None, "time": 4102444800.0,
         "upgrade": "format 2: 0.1.0 may not write here"}
WRITERS_WAIT = 60.0


def is_guard(record: dict | None) -> bool:
    return isinstance(record, dict) and record.get("host") == GUARD["host"]


def _guard(path: Path, tmp: Path, what: str) -> None:
    """Hold `path` for good under GUARD: wait for a live holder, then replace it whole."""
    from .locks import read_record

    if is_guard(read_record(path)):
        return
    lock = FileLock(path, what)
    lock.acquire()
    replace_file(tmp, path, json.dumps(GUARD).encode(), True)
    lock.held = False  # it is the guard now, not ours to release


def upgrade(registry, notify=lambda message: None) -> dict:
    """Upgrade `registry` (a modelreg.Registry on format 1) in place; idempotent."""
    root: Path = registry.path
    tmp = root / "tmp"
    if registry.format >= layout.FORMAT:
        return {"upgraded": False, "collections": 0, "format": registry.format}
    _guard(root / "locks" / "gc.lock", tmp, "gc (upgrade)")
    deadline = time.monotonic() + WRITERS_WAIT
    while live_writers(root / "locks"):
        if time.monotonic() >= deadline:
            raise LockTimeout("0.1.0 writers are still running", hint="run `modelreg upgrade` again when they have finished")
        time.sleep(0.05)
    ids = iter_collection_ids(root)
    for cid in ids:
        directory = root / "collections" / cid.entity / cid.project / cid.name
        _guard(directory / "collection.lock", tmp, f"collection {cid.full} (upgrade)")
    storage = FsStorage(root, fsync=registry.fsync)
    olds = {cid: Collection1(root, cid, fsync=registry.fsync) for cid in ids}
    marks = _links_by_source(olds)
    for cid, old in olds.items():
        _write_collection(storage, cid, old, marks.get(cid, {}))
        notify(f"upgraded {cid.full}")
    config = registry.config
    config.data["format"] = layout.FORMAT
    replace_file(tmp, config.path, config.dumps(), registry.fsync)
    return {"upgraded": True, "collections": len(ids), "format": layout.FORMAT}


def _links_by_source(olds: dict) -> dict:
    """artifact id -> {version: [registered full names]}: the "linked into" marks."""
    marks: dict = {}
    for cid, old in olds.items():
        if old.kind != "registered":
            continue
        for number in old.numbers():
            record = old.read(number)
            if isinstance(record, mf.LinkRecord):
                targets = marks.setdefault(record.source, {}).setdefault(record.source_version, [])
                if cid.full not in targets:
                    targets.append(cid.full)
    return marks


def _write_collection(storage: FsStorage, cid, old: Collection1, marks: dict) -> None:
    new = Collection2(storage, cid)
    key = layout.change_key(new.prefix, 0)
    if storage.stat(key) is not None:
        return  # done by an earlier, interrupted upgrade: record 0 is written whole or not at all
    info = old.info
    if new.claim() is None:
        claim = {"format": layout.FORMAT, "name": cid.name, "kind": info["kind"], "created": info.get("created", now())}
        storage.create(new.claim_key, dumps(claim))
    add, delete = {}, []
    numbers = old.numbers()
    for number in numbers:
        record = old.read(number)
        if isinstance(record, mf.Tombstone):
            add[str(number)] = {"digest": record.digest, "deleted": True, "deleted_at": record.deleted}
            delete.append(number)
            continue
        add[str(number)] = summary_of(record, new.put_manifest(record))
    events = [{k: v for k, v in e.items() if k != "holder"} for e in old.history() if e.get("event") != "lock-broken"]
    # The record's time is what format 1 showed as `updated`, so `ls` reads the same after.
    created = info.get("created", "")
    times = [s.created for s in old.summaries()] + [created if isinstance(created, str) else "", old.history_time()]
    record = {"format": layout.FORMAT, "seq": 0, "txid": os.urandom(16).hex(), "time": max(times), "user": provenance.user(),
              "host": socket.gethostname(), "upgraded": {"from": 1}, "events": events, "add": add,
              "delete": delete, "aliases": old.aliases(), "next": (numbers[-1] + 1) if numbers else 0,
              "marks": [{"version": n, "link": t} for n, targets in sorted(marks.items()) for t in targets]}
    if not storage.create(key, dumps(record)):
        raise Error(f"cannot upgrade {cid.full}: {key} appeared while upgrading")
