"""Streaming BLAKE3 of files, bytes and file sets; the only module importing blake3."""

from __future__ import annotations

import json
import mmap
import os

# Below this size a memory map and worker threads cost more than they save.
MMAP_THRESHOLD = 4 * 1024 * 1024
CHUNK = 1024 * 1024


def _blake3():
    from blake3 import blake3  # deferred: `ls` and `--help` never need it

    return blake3


def new_hasher():
    return _blake3()()


def hash_bytes(data: bytes | memoryview) -> str:
    return _blake3()(data).hexdigest()


def hash_fd(fd: int, size: int, threads: int | None = None) -> str:
    """Hash the first `size` bytes readable from `fd` (from offset 0).

    Large files use every core unless `threads` says how many (1 when another thread
    is busy copying).
    """
    blake3 = _blake3()
    if size >= MMAP_THRESHOLD:
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as view:
            return blake3(view, max_threads=threads or blake3.AUTO).hexdigest()
    hasher = blake3()
    remaining = size
    offset = 0
    while remaining > 0:
        chunk = os.pread(fd, min(CHUNK, remaining), offset)
        if not chunk:
            break
        hasher.update(chunk)
        offset += len(chunk)
        remaining -= len(chunk)
    return hasher.hexdigest()


def hash_file(path: str | os.PathLike) -> tuple[str, int]:
    """Digest and size of a file as it is now."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return hash_fd(fd, size), size
    finally:
        os.close(fd)


def version_digest(entries: list[tuple[str, str, int, bool]]) -> str:
    """SPEC §5: BLAKE3 of the compact JSON of [path, digest, size, executable], sorted by path."""
    rows = [[path, digest, size, bool(executable)] for path, digest, size, executable in sorted(entries)]
    return hash_bytes(json.dumps(rows, separators=(",", ":")).encode())
