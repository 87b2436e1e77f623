"""Blobs: content-addressed, write-once, read-only files under `objects/` (SPEC §5).

A blob is copied into `tmp/`, hashed there (never the user's file, which a training job
may still be writing), made read-only, made durable and only then published under its
digest with link(2), so an existing blob is never rewritten and a reader never sees a
partial one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from . import hashing
from .errors import Error, InvalidInput
from .util import fsync_dir

FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
SMALL_FILE = hashing.MMAP_THRESHOLD
# Past this many files one syncfs beats an fsync per file (measured with 5,000 small files).
BATCH_SYNC_FILES = 16

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


def copy_fd(src_fd: int, dst_fd: int) -> int:
    """Copy src to dst with the kernel's copy path; returns the bytes copied."""
    total = 0
    try:
        while True:
            n = os.copy_file_range(src_fd, dst_fd, 1 << 30)
            if n == 0:
                return total
            total += n
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL) or total:
            raise
    while True:
        chunk = os.read(src_fd, 1 << 20)
        if not chunk:
            return total
        os.write(dst_fd, chunk)
        total += len(chunk)


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_libc = None


def sync_filesystem(fd: int) -> None:
    """syncfs(2) on the filesystem holding fd; falls back to sync(2)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    syncfs = getattr(_libc, "syncfs", None)
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
    tmp: Path
    digest: str
    size: int


class Store:
    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self.objects = root / "objects"
        self.tmp = root / "tmp"
        self.fsync = fsync

    def blob_path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def temp_path(self, prefix: str) -> Path:
        return self.tmp / f"{prefix}-{os.getpid()}-{secrets.token_hex(6)}"

    # -- ingest ---------------------------------------------------------------------

    def stage(self, src: Path, sync_now: bool) -> Staged:
        """Copy one source file into tmp/ and hash the copy."""
        try:
            src_fd = os.open(src, os.O_RDONLY)
        except OSError as exc:
            raise InvalidInput(f"cannot read {src}: {exc.strerror}") from None
        tmp = self.temp_path("blob")
        try:
            dst_fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            os.close(src_fd)
            raise io_error(exc, f"storing {src}") from None
        try:
            size = os.fstat(src_fd).st_size
            if size < SMALL_FILE:
                data = _read_all(src_fd, size)
                write_all(dst_fd, data)
                digest, size = hashing.hash_bytes(data), len(data)
            else:
                if not try_reflink(src_fd, dst_fd):
                    copy_fd(src_fd, dst_fd)
                size = os.fstat(dst_fd).st_size
                digest = hashing.hash_fd(dst_fd, size)
            os.fchmod(dst_fd, 0o444)
            if sync_now:
                os.fsync(dst_fd)
        except OSError as exc:
            os.close(dst_fd)
            tmp.unlink(missing_ok=True)
            raise io_error(exc, f"storing {src}") from None
        except BaseException:
            os.close(dst_fd)
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(src_fd)
        os.close(dst_fd)
        return Staged(tmp, digest, size)

    def ingest(self, sources: list[Path], on_file=None) -> list[tuple[str, int]]:
        """Store each source file as a blob; returns (digest, size) in order.

        fsyncs are batched as SPEC §5 allows: temp files are written, made durable (one
        syncfs for many files), published, then the object directories are synced.
        """
        batch = self.fsync and len(sources) > BATCH_SYNC_FILES
        staged: list[Staged] = []
        try:
            for src in sources:
                staged.append(self.stage(src, sync_now=self.fsync and not batch))
                if on_file:
                    on_file(staged[-1].size)
            if batch:
                self._sync_tree()
            touched = {self.publish(item) for item in staged}
            if self.fsync:
                if batch:
                    self._sync_tree()
                else:
                    for directory in touched - {None}:
                        fsync_dir(directory)
        except OSError as exc:
            raise io_error(exc, "publishing blobs") from None
        finally:
            for item in staged:
                item.tmp.unlink(missing_ok=True)
        return [(item.digest, item.size) for item in staged]

    def publish(self, item: Staged) -> Path | None:
        """Link a staged temp file into objects/; returns the directory changed, if any."""
        final = self.blob_path(item.digest)
        try:
            os.link(item.tmp, final)
        except FileNotFoundError:
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(item.tmp, final)
            except FileExistsError:
                return self._refresh(final)
        except FileExistsError:
            return self._refresh(final)
        return final.parent

    @staticmethod
    def _refresh(final: Path) -> None:
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
    chunks = []
    while True:
        chunk = os.read(fd, max(size_hint, 1 << 16))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
