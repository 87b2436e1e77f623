"""The stat cache of source files: reuse a digest when a file has not changed (SPEC §5).

`log` of a checkpoint where one file of ten changed should not read the other nine.
For every source file it stored, `log` records (device, inode, size, mtime, ctime) and
the digest of the store's copy; the next `log` that finds the same five values, and
the blob still in the store, takes the digest without reading a byte.

The cache is never authoritative, so every doubt means "hash it":
- A file's timestamps only prove it unchanged when they are older than the moment it
  was looked at by more than the filesystem's timestamp granularity; otherwise a write
  right after our read could leave all five values as they were (git's "racy" index
  entries). Such a file is hashed and not recorded; the next `log` records it.
- A missing, unreadable, corrupt or foreign cache file is an empty cache.
- Writers replace the whole file atomically (temp file, rename; no fsync: it is a
  cache). Two concurrent logs each merge what is on disk with their own entries just
  before replacing it; if they race, the last writer wins and the other's entries are
  simply hashed again next time.
- A digest is only used when its blob exists (and its mtime is refreshed, as for any
  reused blob, so that gc's grace period sees it in use).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .util import temp_name

# Relative to the .modelreg directory; fsck and gc find the cache here.
STAT_CACHE = "cache/stat.json"
FORMAT = 1
# Entries beyond this are dropped, least recently recorded first: the file stays small
# enough to load in a few milliseconds.
MAX_ENTRIES = 50_000
# How much older than the moment we looked a file's timestamps must be to be trusted.
# Timestamps in whole seconds mean a coarse filesystem (FAT stamps mtime in 2 s steps);
# otherwise they come from the kernel's coarse clock, a tick (at most 10 ms) behind.
# The margin is far wider than a tick because one long write(2) (a 1 GB tensor written
# at once) stamps the file when it starts, not when its last byte lands. Clocks that
# disagree (a network filesystem's server behind this machine) are not covered, as in
# git's index.
RACY_COARSE_NS = 3_000_000_000
RACY_FINE_NS = 1_000_000_000
_HEX = frozenset("0123456789abcdef")


def stat_cache_path(registry: str | os.PathLike) -> Path:
    """The stat cache file of the registry at `registry` (the .modelreg directory)."""
    return Path(registry) / STAT_CACHE


def _key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def trusted(st: os.stat_result, looked_ns: int) -> bool:
    """Whether `st`, taken at or after wall-clock time `looked_ns`, can vouch for the content.

    Any change after that moment stamps the file with a time at least `looked_ns` less
    one granularity, so a recorded mtime and ctime older than that cannot come back
    unchanged after a write.
    """
    newest = max(st.st_mtime_ns, st.st_ctime_ns)
    coarse = st.st_mtime_ns % 1_000_000_000 == 0 and st.st_ctime_ns % 1_000_000_000 == 0
    return newest < looked_ns - (RACY_COARSE_NS if coarse else RACY_FINE_NS)


def _valid_digest(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value)


def _valid_entry(value) -> bool:
    return (isinstance(value, list) and len(value) == 7 and _valid_digest(value[5])
            and all(type(v) is int for v in value[:5]) and type(value[6]) is int)


class StatCache:
    """One registry's stat cache, loaded lazily, saved once at the end of an ingest."""

    def __init__(self, registry: str | os.PathLike) -> None:
        self.path = stat_cache_path(registry)
        self.tmp_dir = Path(registry) / "tmp"
        self._entries: dict[str, list] | None = None
        self._new: dict[str, list] = {}
        try:
            self._cwd = os.getcwd()  # once: os.path.abspath asks the kernel on every call
        except OSError:  # the working directory was removed: only absolute paths are keys
            self._cwd = None

    def _abs(self, path) -> str | None:
        path = os.fspath(path)
        if os.path.isabs(path):
            return os.path.normpath(path)
        return None if self._cwd is None else os.path.normpath(os.path.join(self._cwd, path))

    def _read(self) -> dict[str, list]:
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
            return {}
        return data["entries"]

    @property
    def entries(self) -> dict[str, list]:
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def lookup(self, path: str | os.PathLike, st: os.stat_result) -> str | None:
        """The digest recorded for `path` if it is recorded with exactly this stat, else None."""
        key = self._abs(path)
        entry = self.entries.get(key) if key is not None else None
        if not _valid_entry(entry) or entry[:5] != _key(st):
            return None
        return entry[5]

    def record(self, path: str | os.PathLike, st: os.stat_result, digest: str, looked_ns: int) -> None:
        """Remember `digest` for `path` as it was at `st`, unless its timestamps are racy."""
        key = self._abs(path)
        if key is None or not trusted(st, looked_ns):
            return
        self._new[key] = [*_key(st), digest, looked_ns]

    def save(self) -> None:
        """Merge our entries into the file on disk and replace it; errors are ignored."""
        if not self._new:
            return
        merged = self._read()
        merged.update(self._new)
        if len(merged) > MAX_ENTRIES:
            ranked = sorted(merged.items(), key=lambda item: item[1][6] if _valid_entry(item[1]) else -1)
            merged = dict(ranked[-MAX_ENTRIES:])
        data = json.dumps({"format": FORMAT, "entries": merged}, separators=(",", ":")).encode()
        tmp = self.tmp_dir / temp_name("statcache")
        try:
            self.path.parent.mkdir(exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return
        self._entries = merged
        self._new = {}


def problem(registry: str | os.PathLike) -> str | None:
    """For fsck: what is wrong with the stat cache file, or None (missing is fine)."""
    path = stat_cache_path(registry)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    except ValueError:
        return f"{path} is not valid JSON"
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        return f"{path} is not a format-{FORMAT} stat cache"
    bad = sum(1 for entry in data["entries"].values() if not _valid_entry(entry))
    return f"{path} has {bad} invalid entries" if bad else None
