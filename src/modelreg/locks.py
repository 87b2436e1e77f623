"""Lock files (never flock), stale-lock recovery and writer registration.

A lock holds its holder: host, pid, the holder's process start time and the time the
lock was taken. The holder is written before the lock becomes visible: a temp file is
filled, then link(2)ed to the lock's name (EEXIST: held), so a kill or a full disk never
leaves a lock that names nobody. On a full disk, where no temp file can be filled, the
lock is a symlink whose target spells the holder (`mrlock:HOST:PID:PSTART:TIME`; a short
target needs no data block), as Mercurial's locks are. Readers understand both forms.

A lock whose holder is dead on this host (pid gone, or reused: another start time), or
that is older than ten minutes when held from another host, is stale and broken at once;
a live one is waited for. A lock that names no holder (0.1.0 created its locks empty and
filled them afterwards) is stale once it is two seconds old.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

from .errors import Error, LockTimeout
from .util import link_noreplace, temp_name, write_all

STALE_REMOTE_SECONDS = 600
# 0.1.0 filled a lock within microseconds of creating it: an empty one this old is a leftover.
UNREADABLE_STALE_SECONDS = 2.0
SYMLINK_PREFIX = "mrlock:"
_FULL = (errno.ENOSPC, errno.EDQUOT)


def lock_wait_seconds() -> float:
    # The contract's 10 s; tests of the timeout path may shorten it.
    try:
        return float(os.environ.get("MODELREG_LOCK_TIMEOUT", "10"))
    except ValueError:
        return 10.0


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a process, so a reused pid is not mistaken for the holder."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def holder_record() -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pstart": _process_start(os.getpid()),
        "time": time.time(),
    }


def holder_is_dead(record: dict) -> bool:
    """True when the holder described by a lock record cannot still hold it."""
    if "unreadable_since" in record:
        return time.time() - record["unreadable_since"] > UNREADABLE_STALE_SECONDS
    try:
        host, pid, taken = record["host"], int(record["pid"]), float(record["time"])
    except (KeyError, TypeError, ValueError):
        return True
    if host != socket.gethostname():
        return time.time() - taken > STALE_REMOTE_SECONDS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    except (OverflowError, ValueError):
        return True  # no such pid can exist
    started = record.get("pstart")
    return started is not None and _process_start(pid) not in (None, started)


def _symlink_target(record: dict) -> str:
    return f"{SYMLINK_PREFIX}{record['host']}:{record['pid']}:{record.get('pstart') or ''}:{int(record['time'])}"


def _parse_target(target: str) -> dict | None:
    if not target.startswith(SYMLINK_PREFIX):
        return None
    try:
        host, pid, pstart, taken = target[len(SYMLINK_PREFIX):].rsplit(":", 3)
        return {"host": host, "pid": int(pid), "pstart": pstart or None, "time": float(taken)}
    except ValueError:
        return None


def read_record(path: Path) -> dict | None:
    """The lock's holder record (from a file or a symlink lock); None when there is no lock.

    A lock that names no holder reads as `{"unreadable_since": its mtime}`.
    """
    try:
        record = _parse_target(os.readlink(path))
    except FileNotFoundError:
        return None
    except OSError as exc:
        record = None
        if exc.errno == errno.EINVAL:  # a regular file: the usual lock
            try:
                record = json.loads(path.read_bytes())
            except FileNotFoundError:
                return None
            except (OSError, ValueError):
                pass
    if isinstance(record, dict):
        return record
    try:
        return {"unreadable_since": os.lstat(path).st_mtime}
    except (FileNotFoundError, NotADirectoryError):
        return None


def _create_exclusive(path: Path, record: dict, tmp_dir: Path | None = None) -> bool:
    """Create `path` holding `record`, only if nothing is there; False when something is.

    The record is written to a temp file (in `tmp_dir`, else beside `path`) and linked to
    `path`, so the lock never exists without its holder. A full disk falls back to a
    symlink lock, which needs no data block.
    """
    tmp = (tmp_dir or path.parent) / temp_name("lock")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        if exc.errno in _FULL:
            return _create_symlink(path, record)
        raise
    try:
        try:
            write_all(fd, json.dumps(record).encode())
        finally:
            os.close(fd)
        link_noreplace(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno in _FULL:
            tmp.unlink(missing_ok=True)  # frees what the temp file took before the fallback
            return _create_symlink(path, record)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _create_symlink(path: Path, record: dict) -> bool:
    try:
        os.symlink(_symlink_target(record), path)
    except FileExistsError:
        return False
    return True


def break_stale(path: Path, seen: dict, tmp_dir: Path | None = None) -> bool:
    """Remove the lock `path` if it still holds the stale record `seen`; True if removed.

    A second exclusive file serialises breakers, so one breaker cannot delete a lock that
    another process took after the first breaker read the stale one.
    """
    breaker = path.with_name(path.name + ".break")
    if not _create_exclusive(breaker, holder_record(), tmp_dir):
        record = read_record(breaker)
        if record is not None and holder_is_dead(record):
            _remove_if_same(breaker, record)
        return False
    try:
        if read_record(path) == seen:
            path.unlink()
            return True
        return False
    except FileNotFoundError:
        return False
    finally:
        breaker.unlink(missing_ok=True)


def _remove_if_same(path: Path, record: dict) -> None:
    # A dead breaker's file: removed unless a live breaker replaced it meanwhile. The window
    # between read and unlink is tiny and only costs that breaker one more round.
    if read_record(path) == record:
        path.unlink(missing_ok=True)


class FileLock:
    """An exclusive lock file; `with FileLock(path): ...`. Temp files go to `tmp_dir`."""

    def __init__(self, path: Path, what: str, timeout: float | None = None, on_break=None,
                 tmp_dir: Path | None = None) -> None:
        self.path = path
        self.what = what
        self.timeout = lock_wait_seconds() if timeout is None else timeout
        self.on_break = on_break
        self.tmp_dir = tmp_dir
        self.held = False

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        mine = holder_record()
        while True:
            try:
                if _create_exclusive(self.path, mine, self.tmp_dir):
                    self.held = True
                    return
            except FileNotFoundError as exc:
                # link(2) names the lock as its second file; open(2) the temp file as its only one
                named = exc.filename2 or exc.filename
                missing = Path(named).parent if named else self.path.parent
                raise Error(f"cannot lock {self.what}: {missing} is missing") from None
            except OSError as exc:
                if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise Error(f"cannot write the registry: {exc.strerror}: {self.path}") from None
                if exc.errno in _FULL:
                    raise Error(f"no space left on device while locking {self.what}",
                                hint="free some space, then run `modelreg gc`") from None
                raise Error(f"cannot lock {self.what}: {exc.strerror or exc}: {self.path}") from None
            record = read_record(self.path)
            if record is None:
                continue
            if holder_is_dead(record) and break_stale(self.path, record, self.tmp_dir):
                if self.on_break:
                    self.on_break(record)
                continue
            if time.monotonic() >= deadline:
                holder = f"pid {record['pid']} on {record['host']}" if "pid" in record and "host" in record \
                    else "a process that left no name in it"
                raise LockTimeout(
                    f"{self.what} is locked by {holder} (waited {self.timeout:g} s)",
                    hint=f"if no modelreg process is running, remove {self.path}",
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class WriterRegistration:
    """Announces an in-flight writer in `locks/writers/` so that gc leaves its blobs alone.

    The writer registers first, then looks for `gc.lock`; gc takes `gc.lock` first, then
    looks for writers. Whichever comes second sees the other, so a blob written by a
    registered writer can never be collected before its manifest is published.
    """

    def __init__(self, locks_dir: Path, gc_lock: str = "gc.lock") -> None:
        self.writers = locks_dir / "writers"
        self.gc_lock = locks_dir / gc_lock
        self.tmp_dir = locks_dir.parent / "tmp"
        self.path: Path | None = None

    def __enter__(self) -> "WriterRegistration":
        deadline = time.monotonic() + max(lock_wait_seconds(), 60.0)
        mine = holder_record()
        while True:
            path = self.writers / f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
            self.writers.mkdir(parents=True, exist_ok=True)
            _create_exclusive(path, mine, self.tmp_dir)
            self.path = path
            record = read_record(self.gc_lock)
            if record is None:
                return self
            path.unlink(missing_ok=True)
            self.path = None
            if holder_is_dead(record):
                break_stale(self.gc_lock, record, self.tmp_dir)
                continue
            if time.monotonic() >= deadline:
                raise LockTimeout(f"gc is running (pid {record.get('pid', '?')} on {record.get('host', '?')})")
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def live_writers(locks_dir: Path) -> list[Path]:
    """Registered writers still alive; entries of dead writers are removed on the way."""
    alive = []
    try:
        entries = list((locks_dir / "writers").iterdir())
    except FileNotFoundError:
        return alive
    for entry in entries:
        record = read_record(entry)
        if record is None:
            continue
        if holder_is_dead(record):
            entry.unlink(missing_ok=True)
        else:
            alive.append(entry)
    return alive
