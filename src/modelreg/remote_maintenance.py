"""`fsck` and `gc` on a registry at an object-store URL (SPEC §7).

The checks and the findings are format 2's (`maintenance._Scan2`): claims, change
records, manifests, snapshots, aliases, links and marks are read through the registry's
storage exactly as on a disk. What differs is below the records:

- **Blobs** are listed once (`objects/`, sizes and last-modified times in the listing):
  `--quick` compares each referenced blob's listed size with its manifests, so it makes
  no request per blob; a full fsck streams every blob down and re-hashes it, keeping
  nothing (the user's cache only ever receives blobs a pull verified).
- **Time** is the store's. An object's age is the store's "now" minus its last-modified:
  gc's "now" is its own marker's last-modified; fsck (and `gc --dry-run`) learn it by
  writing and listing one `tmp/` object. A machine's clock never decides what is old.
- **Leftovers** are what the store can hold: `tmp/` keys (a create-only probe cut short),
  lapsed writer leases and gc markers (not renewed for LEASE_SECONDS), unreferenced
  blobs and manifests no record names, and "linked into" marks with no link.

`gc` is the lease handshake of SPEC §7: it creates `locks/gc.json` (create-only; a marker
not renewed for LEASE_SECONDS is a stopped gc's and is taken over by replace-if-unchanged),
then waits while any writer's lease was renewed within LEASE_SECONDS of its marker, then
scans and deletes. Its marker is renewed every RENEW_SECONDS while it works; if a renewal
fails or comes late (the process was paused, the network went), writers may have passed
it over, so gc stops deleting.
"""

from __future__ import annotations

import json
import os
import threading
import time

from . import layout
from .errors import Error, LockTimeout
from .maintenance import (GC_WRITER_WAIT, HEX2, HEX62, FsckResult, GcResult, Leftover, _age, _Collector,
                          _Scan2, _tmp_in_flight, _users_text, grace_seconds)
from .remote import FILES_AT_ONCE, GC_MARKER, LEASE_SECONDS, LEASES, PART, RENEW_SECONDS
from .storage import KeyMissing
from .util import now as rfc3339_now, temp_name, temp_owner

POLL_SECONDS = 1.0


# -- the store's clock -----------------------------------------------------------------


def listed(storage, key: str):
    """`key` as a listing shows it (size, last-modified), or None.

    A listing, not a HEAD: HEAD's Last-Modified is cut to whole seconds, a listing's is
    not, and ages compare the two.
    """
    for item in storage.list(key):
        if item.key == key:
            return item
    return None


def store_now(storage) -> float:
    """The store's clock now: the last-modified of an object written for the purpose."""
    key = f"tmp/{temp_name('clock')}"
    storage.put(key, b"")
    try:
        item = listed(storage, key)
    finally:
        try:
            storage.delete(key)
        except (Error, OSError):
            pass  # a temp key: gc reclaims it
    if item is None:
        raise Error(f"{storage.url}: an object just written is not listed; the store's clock cannot be read")
    return item.mtime


def _reading_clock(registry) -> float:
    """The store's clock for fsck and `gc --dry-run`, which remove nothing by it.

    With read-only credentials the probe write is refused: this machine's clock then
    only decides which leftovers are listed, and a note says so.
    """
    from .storage_s3 import RemoteError

    try:
        return store_now(registry.storage)
    except RemoteError as exc:
        if exc.cause != "access denied":
            raise
        registry.notify("note: cannot write to the store to read its clock (access denied); "
                        "leftovers' ages are judged by this machine's clock")
        return time.time()


# -- the scanner -----------------------------------------------------------------------


class _RemoteScan(_Scan2):
    """`_Scan2` with the blobs, temp keys and leases of an object store, aged by its clock."""

    def __init__(self, registry, verify: str, on_progress=None, *, now: float) -> None:
        super().__init__(registry, verify, on_progress)
        self.now = now
        self.seen: dict[str, object] = {}  # key -> Listed, from every listing made

        storage, seen = self.storage, self.seen

        class Recording:  # collections' temp keys are judged by their listed age
            def __getattr__(self, name):
                return getattr(storage, name)

            def list(self, prefix, start_after=None):
                found = storage.list(prefix, start_after)
                seen.update((item.key, item) for item in found)
                return found

        self.storage = Recording()
        self.raw = storage

    def rel(self, path) -> str:
        return str(path)

    def key_path(self, key: str) -> str:
        return key  # keys, not paths: a collection's temp key reaches temp_file() as its key

    def run(self) -> FsckResult:
        self.check_collections()
        self.check_blobs()
        self.check_tmp()
        self.check_locks()
        listed_ = tuple(x for x in self.leftovers if not x.doubtful)
        return FsckResult(tuple(self.problems), listed_, tuple(self.dangling), dict(self.counts),
                          self.verify == "quick")

    def delete(self, key: str):
        return self.raw.delete(key)

    # -- blobs -----------------------------------------------------------------------

    def check_blobs(self) -> None:
        found = {}
        for item in self.storage.list("objects/"):
            parts = item.key.split("/")
            if len(parts) != 3 or not (HEX2.fullmatch(parts[1]) and HEX62.fullmatch(parts[2])):
                self.problem("blob", item.key, "unexpected key in objects/: not a blob name")
                continue
            found[parts[1] + parts[2]] = item
        hashed = {}
        if self.verify == "full":
            from .storage_s3 import run_parallel

            items = sorted(found.items())
            hashed = dict(zip((d for d, _ in items), run_parallel(self.hash_blob, items, FILES_AT_ONCE)))
        for digest, item in sorted(found.items()):
            self.check_blob(digest, item, hashed.get(digest))
        for digest in sorted(set(self.users) - set(found)):
            users = [u for u in self.users[digest] if self.still_live(u[0])]
            if users:  # else every user was deleted (and the blob collected) while we looked
                self.problem("blob", digest, f"missing from the store; needed by {_users_text(users)}")

    def hash_blob(self, item) -> tuple[str, int] | str | None:
        """(BLAKE3, size) of a blob as the store serves it, streamed and kept nowhere; None
        when it went away meanwhile (a concurrent gc), a message when it cannot be read."""
        from .hashing import new_hasher
        from .storage_s3 import RemoteError

        digest, entry = item
        storage = self.raw
        ob = storage._ob

        def get():
            hasher, size = new_hasher(), 0
            for chunk in ob.get(storage.transfer_store(entry.size), entry.key).stream(min_chunk_size=PART):
                hasher.update(memoryview(chunk))
                size += len(chunk)
                self.on_progress(len(chunk))
            return hasher.hexdigest(), size

        try:
            return storage._call("get", entry.key, get)
        except KeyMissing:
            return None
        except RemoteError as exc:
            if exc.cause in ("connection refused", "unknown host", "no credentials", "access denied"):
                raise  # nothing more can be checked
            return exc.message

    def check_blob(self, digest: str, item, hashed=None) -> None:
        users = self.users.get(digest, [])
        used = f"; used by {_users_text(users)}" if users else "; unreferenced, so gc removes it"
        if self.verify == "full":
            if hashed is None:
                return  # removed while we looked (a concurrent gc)
            if isinstance(hashed, str):
                self.problem("blob", digest, f"cannot be read: {hashed}{used}")
                return
            actual, size = hashed
        else:
            actual, size = None, item.size  # --quick: the listed size only
        self.counts["blobs"] += 1
        self.counts["bytes"] += size
        if not self.judge_blob(digest, users, used, size, actual):
            return
        if not users and not self.unreadable and digest not in self.mentioned:
            self.leftover("blob", item.key, "unreferenced blob (no live version uses it)", item.size,
                          age=max(0.0, self.now - item.mtime), remove=lambda k=item.key: self.delete(k))

    # -- leftovers -------------------------------------------------------------------

    def temp_file(self, key, what: str = "temporary object of an interrupted write") -> None:
        item = self.seen.get(key)
        if item is None:
            return
        age = max(0.0, self.now - item.mtime)
        base = key.rpartition("/")[2]
        in_flight = _tmp_in_flight(base, age)  # this host's own temp keys: by their pid
        if in_flight:
            return
        doubtful = in_flight is None and temp_owner(base) is not None and age < LEASE_SECONDS
        self.leftover("tmp", key, f"{what} ({_age(age)} old)", item.size, age=age,
                      remove=lambda k=key: self.delete(k), doubtful=doubtful)

    def check_tmp(self) -> None:
        for item in self.storage.list("tmp/"):
            self.temp_file(item.key)

    def check_locks(self) -> None:
        """Lapsed writer leases and a stopped gc's marker: no grace, as a dead holder's lock."""
        for item in self.storage.list(LEASES) + [m for m in [self.seen_marker()] if m is not None]:
            age = self.now - item.mtime
            if age <= LEASE_SECONDS:
                continue  # a writer (or gc) at work, or this gc's own marker
            what = "gc marker" if item.key == GC_MARKER else "writer lease"
            self.leftover("lock", item.key, f"{what} of {_holder_of(self.raw, item.key)}, not renewed for "
                          f"{_age(age)} (lapsed)", item.size, remove=lambda k=item.key: self.delete(k))

    def seen_marker(self):
        return listed(self.storage, GC_MARKER)


def _holder_of(storage, key: str) -> str:
    try:
        return _holder_text(storage.read(key))
    except (Error, OSError):
        return "an unknown process"


def fsck_remote(registry, quick: bool = False, on_progress=None) -> FsckResult:
    """Check a remote registry as `maintenance.fsck` checks a local one; change nothing."""
    return _RemoteScan(registry, "quick" if quick else "full", on_progress, now=_reading_clock(registry)).run()


# -- gc --------------------------------------------------------------------------------


class _Marker:
    """gc's marker `locks/gc.json`: created (or taken over from a stopped gc), renewed by a
    thread while gc works, deleted at the end. `time` is its first last-modified: the
    store's "now" that leases and ages are measured from."""

    def __init__(self, registry) -> None:
        from .provenance import user
        import socket

        self.registry = registry
        self.storage = registry.storage
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "user": user(),
                       "id": os.urandom(8).hex(), "time": rfc3339_now()}
        self.token: str | None = None
        self.time = 0.0
        self._last = 0.0
        self._failed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _data(self) -> bytes:
        return (json.dumps(self.record) + "\n").encode()

    def __enter__(self) -> "_Marker":
        self._take()
        self._thread = threading.Thread(target=self._renew, name="modelreg-gc-marker", daemon=True)
        self._thread.start()
        return self

    def _take(self) -> None:
        from .locks import lock_wait_seconds

        storage = self.storage
        deadline = time.monotonic() + lock_wait_seconds()
        while True:
            if storage.create(GC_MARKER, self._data()):
                break
            try:
                raw, token = storage.read_token(GC_MARKER)
            except KeyMissing:
                continue  # that gc ended just now
            # Listed after the read: a newer marker than the one read looks fresh, never stale.
            item = listed(storage, GC_MARKER)
            if item is None:
                continue
            if store_now(storage) - item.mtime > LEASE_SECONDS:
                if storage.replace(GC_MARKER, self._data(), token):
                    self.registry.notify(f"note: took over the gc marker of {_holder_text(raw)}, "
                                         f"which stopped without removing it")
                    break
                continue
            if time.monotonic() >= deadline:
                raise LockTimeout(f"another gc is running on {storage.url} ({_holder_text(raw)})",
                                  hint="run gc again when it has finished")
            time.sleep(POLL_SECONDS)
        self._last = time.monotonic()
        self._read_back()
        item = listed(storage, GC_MARKER)
        if item is None:
            raise Error(f"{storage.url}: the gc marker {GC_MARKER} vanished as it was made; nothing was removed")
        self.time = item.mtime

    def _read_back(self) -> None:
        raw, token = self.storage.read_token(GC_MARKER)
        if raw != self._data():
            raise Error(f"{self.storage.url}: another gc took over the gc marker; nothing more was removed",
                        hint="run gc again")
        self.token = token

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                if not self.storage.replace(GC_MARKER, self._data(), self.token):
                    self._failed = True
                    return
                self._read_back()
                self._last = time.monotonic()
            except (Error, OSError):
                self._failed = True
                return

    def check(self) -> None:
        """Raise unless the marker surely still holds writers off (see the module docstring)."""
        if self._failed or time.monotonic() - self._last > LEASE_SECONDS / 2:
            raise Error(f"{self.storage.url}: gc's marker was not renewed in time (the process was paused or "
                        "the network failed), so writers may no longer wait for it; gc stopped removing",
                        hint="run gc again")

    def wait_for_writers(self) -> None:
        """Wait while a writer's lease was renewed within LEASE_SECONDS of the marker (SPEC §7)."""
        from .locks import lock_wait_seconds

        deadline = time.monotonic() + max(GC_WRITER_WAIT, lock_wait_seconds())
        told = False
        while True:
            fresh = [item for item in self.storage.list(LEASES) if item.mtime > self.time - LEASE_SECONDS]
            if not fresh:
                return
            if time.monotonic() >= deadline:
                shown = ", ".join(_holder_of(self.storage, item.key) for item in fresh[:3])
                raise LockTimeout(f"writers are still running on {self.storage.url} ({shown})",
                                  hint="run gc again when they have finished")
            if not told:
                self.registry.notify(f"waiting for {len(fresh)} writer{'s' if len(fresh) != 1 else ''} "
                                     f"to finish on {self.storage.url} …")
                told = True
            time.sleep(POLL_SECONDS)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if self.storage.read(GC_MARKER) == self._data():  # never another gc's
                self.storage.delete(GC_MARKER)
        except (Error, OSError):
            pass  # left behind: writers ignore it once it lapses, and the next gc takes it over


def _holder_text(raw: bytes) -> str:
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict) or "pid" not in record or "host" not in record:
        return "an unknown process"
    return f"pid {str(record['pid'])[:20]} on {str(record['host'])[:64]}"


class _RemoteCollector(_Collector):
    def __init__(self, registry, grace: int, dry_run: bool, now: float, marker: _Marker | None) -> None:
        super().__init__(registry, grace, dry_run)
        self.now = now
        self.marker = marker

    def take(self, item: Leftover) -> None:
        if not self.dry_run and item.remove is not None:
            self.marker.check()
            try:
                if item.remove() is False:
                    return  # gone already, or (a mark) linked after all
            except KeyMissing:
                return
            except Error as exc:
                from .storage_s3 import RemoteError

                if isinstance(exc, RemoteError):
                    raise  # the store is unreachable or refuses: so would every next removal
                self.reg.notify(f"warning: cannot remove {item.object}: {exc.message}")
                return
        if item.kind in self.counts:
            self.counts[item.kind] += 1
        self.removed.append(item)

    def scanner(self):
        return _RemoteScan(self.reg, "none", now=self.now)


def gc_remote(registry, dry_run: bool = False, grace=None) -> GcResult:
    """Remove unreferenced blobs and leftovers older than `grace`, by the store's clock.

    `dry_run`, like locally, takes no marker and waits for nobody: it reports what gc
    would remove now.
    """
    seconds = grace_seconds(registry, grace)
    if dry_run:
        return _RemoteCollector(registry, seconds, True, _reading_clock(registry), None).run()
    with _Marker(registry) as marker:
        marker.wait_for_writers()
        return _RemoteCollector(registry, seconds, False, marker.time, marker).run()
