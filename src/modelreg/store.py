"""Blobs: content-addressed, write-once, read-only files under `objects/` (SPEC §5).

A blob is copied into `tmp/`, hashed there (never the user's file, which a training job
may still be writing), made read-only, made durable and only then published under its
digest with rename(2) without replacing (renameat2 RENAME_NOREPLACE) or link(2), so an
existing blob is never rewritten and a reader never sees a partial one.

Per-file system calls dominate the cost of many small files (FIELD-NOTES), so a small
file costs: open, fstat, one read, close; a utime of its blob (present: done, and no
call at all when its objects/ directory does not exist); create, write, close the temp
file; one rename. Large files are copied and hashed in one pass (fastcopy.py). A stat
cache (statcache.py) lets `ingest` skip files that have not changed since they were
last stored.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import hashing
from .errors import Error, InvalidInput
from .util import current_umask, fsync_dir, libc, rename_noreplace, temp_name, write_all

FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
SMALL_FILE = hashing.MMAP_THRESHOLD
# Past this many files one syncfs beats an fsync per file (measured with 5,000 small files).
BATCH_SYNC_FILES = 16
# Progress is reported per chunk of this many bytes copied or hashed, never per byte.
PROGRESS_CHUNK = 8 << 20

_reflink_works: bool | None = None


def try_reflink(src_fd: int, dst_fd: int) -> bool:
    """Clone src into dst where the filesystem can (btrfs, xfs, APFS); False elsewhere."""
    global _reflink_works
    if _reflink_works is False:
        return False
    try:
        fcntl.ioctl(dst_fd, FICLONE, src_fd)
    except OSError:
        _reflink_works = False
        return False
    _reflink_works = True
    return True


def copy_fd(src_fd: int, dst_fd: int, on_progress=None) -> int:
    """Copy src to dst with the kernel's copy path; returns the bytes copied.

    `on_progress(n)` is called per chunk copied. With it the kernel copies in chunks of
    PROGRESS_CHUNK rather than 1 GiB, so that a bar moves (measured here with 2 GiB: no
    slower); a callback per chunk keeps per-byte bookkeeping off the copy path.
    """
    total = 0
    copy_range = getattr(os, "copy_file_range", None)  # Linux only; macOS reads and writes
    step = PROGRESS_CHUNK if on_progress else 1 << 30
    try:
        while copy_range is not None:
            n = copy_range(src_fd, dst_fd, step)
            if n == 0:
                return total
            total += n
            if on_progress:
                on_progress(n)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL) or total:
            raise
    pending = 0
    while True:
        chunk = os.read(src_fd, 1 << 20)
        if not chunk:
            if on_progress and pending:
                on_progress(pending)
            return total
        write_all(dst_fd, chunk)
        total += len(chunk)
        if on_progress:
            pending += len(chunk)
            if pending >= PROGRESS_CHUNK:
                on_progress(pending)
                pending = 0



def sync_filesystem(fd: int) -> None:
    """syncfs(2) on the filesystem holding fd; falls back to sync(2)."""
    syncfs = getattr(libc(), "syncfs", None)
    if syncfs is None or syncfs(fd) != 0:
        os.sync()


def io_error(exc: OSError, what: str) -> Error:
    if exc.errno == errno.ENOSPC:
        return Error(f"no space left on device while {what}", hint="free some space, then run `modelreg gc`")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return Error(f"cannot write the registry while {what}: {exc.strerror}")
    return Error(f"I/O error while {what}: {exc.strerror or exc}")


@dataclass(frozen=True)
class Staged:
    tmp: str | None  # None: the blob was already in the store
    digest: str
    size: int
    stat: os.stat_result | None = None  # the source as it was opened, for the stat cache
    looked: int = 0  # wall-clock ns just before that fstat


class Store:
    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self.objects = root / "objects"
        self.tmp = root / "tmp"
        self.fsync = fsync
        self._temp_names = None
        self._chmod = None
        self._fanout: set[str] | None = None  # during ingest: objects/ subdirectories present
        self._on_bytes = None  # during ingest: its progress callback

    def blob_path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def temp_path(self, prefix: str) -> Path:
        return self.tmp / temp_name(prefix)

    def _temp_name(self) -> str:
        # One random part per process and a counter: no getrandom(2) per file.
        if self._temp_names is None:
            prefix = f"{self.tmp}{os.sep}{temp_name('blob', os.urandom(6).hex())}-"
            self._temp_names = (f"{prefix}{n}" for n in itertools.count())
        return next(self._temp_names)

    def _new_temp(self, flags: int) -> tuple[str, int]:
        """A new read-only temp file in tmp/, open with `flags`; (name, fd)."""
        if self._chmod is None:
            self._chmod = (current_umask() & 0o444) != 0  # a umask that strips read bits: chmod after
        tmp = self._temp_name()
        fd = os.open(tmp, flags | os.O_CREAT | os.O_EXCL, 0o444)
        if self._chmod:
            try:
                os.fchmod(fd, 0o444)
            except BaseException:
                os.close(fd)
                os.unlink(tmp)
                raise
        return tmp, fd

    def reuse(self, digest: str) -> bool:
        """True when the blob is present; its mtime is refreshed, as for any reused blob."""
        # Reused blobs look young to gc's grace period, like git's freshened objects.
        if self._fanout is not None and digest[:2] not in self._fanout:
            return False  # not even its directory: no system call (a fresh store, many files)
        path = f"{self.objects}{os.sep}{digest[:2]}{os.sep}{digest[2:]}"
        try:
            os.utime(path)
            return True
        except FileNotFoundError:
            return False
        except OSError:  # not ours to touch (a shared registry): present is enough
            return os.path.isfile(path)

    # -- ingest ---------------------------------------------------------------------

    def stage(self, src: Path, sync_now: bool) -> Staged:
        """Copy one source file into tmp/ and hash the copy (the store's, not the user's).

        During `ingest`, its progress callback hears of the bytes as a large file is
        copied, of a small one's at once.
        """
        on_progress = self._on_bytes
        looked = time.time_ns()
        try:
            src_fd = os.open(src, os.O_RDONLY)
        except OSError as exc:
            raise InvalidInput(f"cannot read {src}: {exc.strerror}") from None
        try:
            st = os.fstat(src_fd)
            if st.st_size < SMALL_FILE:
                data = _read_all(src_fd, st.st_size)
            else:
                return self._stage_large(src, src_fd, st, looked, sync_now, on_progress)
        except OSError as exc:
            raise io_error(exc, f"storing {src}") from None
        finally:
            os.close(src_fd)
        # A small file is read whole into memory: the bytes hashed are the bytes stored.
        digest = hashing.hash_bytes(data)
        if on_progress:
            on_progress(len(data))
        if self.reuse(digest):
            return Staged(None, digest, len(data), st, looked)
        try:
            tmp, dst_fd = self._new_temp(os.O_WRONLY)
        except OSError as exc:
            raise io_error(exc, f"storing {src}") from None
        try:
            write_all(dst_fd, data)
            if sync_now:
                os.fsync(dst_fd)
        except BaseException as exc:
            os.close(dst_fd)
            os.unlink(tmp)
            if isinstance(exc, OSError):
                raise io_error(exc, f"storing {src}") from None
            raise
        os.close(dst_fd)
        return Staged(tmp, digest, len(data), st, looked)

    def _stage_large(self, src: Path, src_fd: int, st: os.stat_result, looked: int, sync_now: bool,
                     on_progress=None) -> Staged:
        """Clone where the filesystem can; else copy and hash in one pass (fastcopy.py)."""
        tmp, dst_fd = self._new_temp(os.O_RDWR)
        try:
            if try_reflink(src_fd, dst_fd):
                size = os.fstat(dst_fd).st_size
                digest = hashing.hash_fd(dst_fd, size)
                if on_progress:
                    on_progress(size)  # a clone copies nothing; its hash runs on every core
            elif self.fsync and hasattr(os, "preadv"):
                from .fastcopy import copy_hashed, set_direct

                digest, size = copy_hashed(src_fd, dst_fd, set_direct(dst_fd), on_progress)
            else:
                # Nothing will wait for the disk (or no preadv): the kernel's copy, then a hash of it.
                copy_fd(src_fd, dst_fd, on_progress)
                size = os.fstat(dst_fd).st_size
                digest = hashing.hash_fd(dst_fd, size)
            if sync_now:
                os.fsync(dst_fd)
        except BaseException:
            os.close(dst_fd)
            os.unlink(tmp)
            raise
        os.close(dst_fd)
        return Staged(tmp, digest, size, st, looked)

    def ingest(self, sources: list[Path], on_file=None, stats=None, cache=None) -> list[tuple[str, int]]:
        """Store each source file as a blob; returns (digest, size) in order.

        `on_file(n)` is told of the bytes stored as they are copied (per chunk of a large
        file), and of the bytes of files skipped through the stat cache, so that it adds
        up to the sources' total size.

        With a stat cache and the sources' `stats`, a file recorded unchanged whose blob
        is present is not read at all. fsyncs are batched as SPEC §5 allows: temp files
        are written, made durable (one syncfs for many files), published, then the
        object directories are synced.
        """
        try:
            # A directory created after this listing (by a concurrent log) only costs a
            # redundant copy: publishing never replaces an existing blob.
            self._fanout = set(os.listdir(self.objects)) if len(sources) > 1 else None
        except OSError:
            self._fanout = None
        self._on_bytes = on_file
        try:
            return self._ingest(sources, on_file, stats, cache)
        finally:
            self._fanout = None
            self._on_bytes = None

    def _ingest(self, sources, on_file, stats, cache) -> list[tuple[str, int]]:
        results: list = [None] * len(sources)
        todo = []
        for i, src in enumerate(sources):
            digest = cache.lookup(src, stats[i]) if cache is not None and stats is not None else None
            if digest is not None and self.reuse(digest):
                results[i] = (digest, stats[i].st_size)
                if on_file:
                    on_file(stats[i].st_size)
            else:
                todo.append(i)
        batch = self.fsync and len(todo) > BATCH_SYNC_FILES
        staged: list[Staged] = []
        published = 0
        try:
            for i in todo:
                item = self.stage(sources[i], sync_now=self.fsync and not batch)
                staged.append(item)
                results[i] = (item.digest, item.size)
                if cache is not None and item.stat is not None:
                    cache.record(sources[i], item.stat, item.digest, item.looked)
            if batch:
                self._sync_tree()
            touched = set()
            for item in staged:
                touched.add(self.publish(item))
                published += 1
            if self.fsync:
                if batch:
                    self._sync_tree()
                else:
                    for directory in touched - {None}:
                        fsync_dir(directory)
        except OSError as exc:
            raise io_error(exc, "publishing blobs") from None
        finally:
            for item in staged[published:]:
                if item.tmp is not None:
                    try:
                        os.unlink(item.tmp)
                    except OSError:
                        pass
        if cache is not None:
            cache.save()
        return results

    def publish(self, item: Staged) -> Path | None:
        """Move a staged temp file into objects/ (its temp name is gone afterwards).

        Returns the directory changed, if any; an existing blob is kept, not replaced.
        """
        if item.tmp is None:
            return None
        final = f"{self.objects}{os.sep}{item.digest[:2]}{os.sep}{item.digest[2:]}"
        try:
            if self._place(item.tmp, final):
                return Path(final).parent
        except FileNotFoundError:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            if self._place(item.tmp, final):
                return Path(final).parent
        self._refresh(final)
        return None

    @staticmethod
    def _place(tmp: str, final: str) -> bool:
        """tmp -> final unless final exists (False, tmp removed)."""
        try:
            if rename_noreplace(tmp, final):
                return True
            os.link(tmp, final)
        except FileExistsError:
            pass
        else:
            os.unlink(tmp)
            return True
        os.unlink(tmp)
        return False

    @staticmethod
    def _refresh(final) -> None:
        # Reused blobs look young to gc's grace period, like git's freshened objects.
        try:
            os.utime(final)
        except OSError:
            pass
        return None

    def _sync_tree(self) -> None:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            sync_filesystem(fd)
        finally:
            os.close(fd)

    # -- reading --------------------------------------------------------------------

    def iter_blobs(self):
        """(digest, path) of every blob file present."""
        try:
            fanout = sorted(os.scandir(self.objects), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for top in fanout:
            if not top.is_dir(follow_symlinks=False):
                continue
            for entry in sorted(os.scandir(top.path), key=lambda e: e.name):
                yield top.name + entry.name, Path(entry.path)

    def verify(self, digest: str, size: int | None = None) -> str | None:
        """None when the blob is intact, else what is wrong with it."""
        path = self.blob_path(digest)
        try:
            actual, actual_size = hashing.hash_file(path)
        except FileNotFoundError:
            return "missing"
        if size is not None and actual_size != size:
            return f"size {actual_size}, expected {size}"
        if actual != digest:
            return "content does not match its digest"
        return None


def _read_all(fd: int, size_hint: int) -> bytes:
    # Asking for one byte more than fstat said: a short read means end of file, so a file
    # of the expected size costs one read(2), not two.
    data = os.read(fd, size_hint + 1)
    if len(data) <= size_hint:
        return data
    chunks = [data]
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
