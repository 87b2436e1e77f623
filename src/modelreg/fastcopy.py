"""Copying a large file into the store while hashing exactly the bytes copied, in one pass.

The source is read into our own page-aligned buffers; each buffer is hashed and then
written, by a second thread, to the store's temp file, with O_DIRECT where the
filesystem allows it. The digest is therefore of the store's copy, the very bytes
written, never of the user's file in place (which a training job may still be writing:
a memory map of it can change under the hash or raise SIGBUS).

O_DIRECT keeps gigabytes of dirty page cache from being allocated and then flushed by
the fsync that follows: the disk writes overlap the reading and hashing instead of
following them. Measured with 2 GiB (bench/bench.py, on FIELD-NOTES' machine): about
half the time of copy_file_range followed by a multi-threaded hash of a memory map of
the copy and an fsync, and below `cp` + `sync`.

(`pull` keeps copy_file_range and hashes the copy afterwards: there the copy is the
user's file, wanted in the page cache, and hashing it concurrently measured no faster.)
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import queue
import threading

from . import hashing

ALIGN = 4096  # O_DIRECT wants offsets, lengths and buffers aligned to the logical block size
CHUNK = 8 << 20
DEPTH = 3  # buffers in flight: one being read and hashed, up to two being written


def set_direct(fd: int) -> bool:
    """Switch `fd` to O_DIRECT; False (and unchanged) where the filesystem does not allow it."""
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | direct)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return False
        raise
    return True


def join(thread: threading.Thread) -> None:
    """Wait for a helper thread even through Ctrl-C: it uses file descriptors that the
    caller closes next, and whose numbers a later open(2) may reuse."""
    interrupted: BaseException | None = None
    while thread.is_alive():
        try:
            thread.join()
        except BaseException as exc:  # raised again once the thread is done
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted


def _clear_direct(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)


def copy_hashed(src_fd: int, dst_fd: int, direct: bool, on_progress=None) -> tuple[str, int]:
    """Read src, hash each buffer, write it to dst (O_DIRECT if `direct`); (digest, size).

    `on_progress(n)` is called once per buffer read and hashed (CHUNK bytes).
    """
    hasher = hashing.new_hasher()
    buffers = [mmap.mmap(-1, CHUNK) for _ in range(DEPTH)]  # page-aligned, as O_DIRECT wants
    free: queue.SimpleQueue = queue.SimpleQueue()
    full: queue.SimpleQueue = queue.SimpleQueue()
    for buf in buffers:
        free.put(buf)
    failure: list[BaseException] = []
    state = {"direct": direct}

    def put(view: memoryview, offset: int) -> None:
        while view:
            if state["direct"] and (offset % ALIGN or len(view) < ALIGN):
                _clear_direct(dst_fd)  # an unaligned tail goes through the page cache
                state["direct"] = False
            want = len(view) - len(view) % ALIGN if state["direct"] else len(view)
            try:
                n = os.pwrite(dst_fd, view[:want], offset)
            except OSError as exc:
                if state["direct"] and exc.errno == errno.EINVAL:  # stricter alignment than ours
                    _clear_direct(dst_fd)
                    state["direct"] = False
                    continue
                raise
            view = view[n:]
            offset += n

    def writer() -> None:
        while True:
            item = full.get()
            if item is None:
                return
            buf, n, offset = item
            if not failure:
                try:
                    with memoryview(buf) as whole:
                        put(whole[:n], offset)
                except BaseException as exc:  # handed to the reading thread, which raises it
                    failure.append(exc)
            free.put(buf)

    thread = threading.Thread(target=writer, name="modelreg-blob-writer", daemon=True)
    thread.start()
    offset = 0
    try:
        while not failure:
            buf = free.get()
            n = os.preadv(src_fd, [buf], offset)
            if n == 0:
                free.put(buf)
                break
            with memoryview(buf) as whole:
                hasher.update(whole[:n])
            full.put((buf, n, offset))
            offset += n
            if on_progress:
                on_progress(n)
    finally:
        full.put(None)
        join(thread)
        for buf in buffers:
            try:
                buf.close()
            except BufferError:  # a traceback still holds a view of it: freed with the traceback
                pass
    if failure:
        raise failure[0]
    return hasher.hexdigest(), offset

