"""Lock files created with O_EXCL (never flock), stale-lock recovery and writer registration.

A lock file holds JSON: host, pid, the holder's process start time and the time the lock
was taken. A lock whose holder is dead on this host, or that is older than ten minutes
when held from another host, is stale and broken; a live one is waited for.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

from .errors import Error, LockTimeout

STALE_REMOTE_SECONDS = 600


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
        return time.time() - record["unreadable_since"] > 60
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
    started = record.get("pstart")
    return started is not None and _process_start(pid) not in (None, started)


def read_record(path: Path) -> dict | None:
    """The lock's record; None when there is no lock file.

    A lock file is created empty and filled a moment later, so an unreadable record is
    only taken for stale once it has stayed unreadable for a while.
    """
    try:
        record = json.loads(path.read_text())
        if isinstance(record, dict):
            return record
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        pass
    try:
        return {"unreadable_since": path.stat().st_mtime}
    except FileNotFoundError:
        return None


def _create_exclusive(path: Path, payload: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, payload)
    finally:
        os.close(fd)
    return True


def _break_stale(path: Path, seen: dict) -> bool:
    """Remove `path` if it still holds the stale record `seen`; True if removed.

    A second O_EXCL file serialises breakers, so one breaker cannot delete a lock that
    another process took after the first breaker read the stale one.
    """
    breaker = path.with_name(path.name + ".break")
    if not _create_exclusive(breaker, json.dumps(holder_record()).encode()):
        record = read_record(breaker)
        if record is not None and holder_is_dead(record):
            try:
                breaker.unlink()
            except FileNotFoundError:
                pass
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


class FileLock:
    """An O_EXCL lock file; `with FileLock(path): ...`."""

    def __init__(self, path: Path, what: str, timeout: float | None = None, on_break=None) -> None:
        self.path = path
        self.what = what
        self.timeout = lock_wait_seconds() if timeout is None else timeout
        self.on_break = on_break
        self.held = False

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        payload = json.dumps(holder_record()).encode()
        while True:
            try:
                if _create_exclusive(self.path, payload):
                    self.held = True
                    return
            except FileNotFoundError:
                raise Error(f"cannot lock {self.what}: {self.path.parent} is missing") from None
            except PermissionError as exc:
                raise Error(f"cannot lock {self.what}: {exc.strerror}: {self.path}") from None
            except OSError as exc:
                if exc.errno in (errno.EROFS, errno.EACCES):
                    raise Error(f"cannot write the registry: {exc.strerror}: {self.path}") from None
                raise
            record = read_record(self.path)
            if record is None:
                continue
            if holder_is_dead(record) and _break_stale(self.path, record):
                if self.on_break:
                    self.on_break(record)
                continue
            if time.monotonic() >= deadline:
                holder = f"pid {record.get('pid', '?')} on {record.get('host', '?')}" if record else "an unknown process"
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

    def __init__(self, locks_dir: Path) -> None:
        self.writers = locks_dir / "writers"
        self.gc_lock = locks_dir / "gc.lock"
        self.path: Path | None = None

    def __enter__(self) -> "WriterRegistration":
        deadline = time.monotonic() + max(lock_wait_seconds(), 60.0)
        payload = json.dumps(holder_record()).encode()
        while True:
            path = self.writers / f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
            self.writers.mkdir(parents=True, exist_ok=True)
            _create_exclusive(path, payload)
            self.path = path
            record = read_record(self.gc_lock)
            if record is None:
                return self
            path.unlink(missing_ok=True)
            self.path = None
            if holder_is_dead(record):
                _break_stale(self.gc_lock, record)
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
