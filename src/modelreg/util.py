"""Small shared pieces: times, temp-file names, atomic file writes."""

from __future__ import annotations

import errno
import os
import re
from datetime import datetime, timezone
from pathlib import Path


def rfc3339(timestamp: float | None = None) -> str:
    """RFC 3339 UTC with microseconds (now, or a POSIX timestamp), sortable as text."""
    moment = datetime.now(timezone.utc) if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> str:
    return rfc3339()


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data`: os.write may write less (a full disk raises on the next call)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# A temp name is `<prefix>_<host>_<pid>_<unique>`. `_` never occurs in a prefix or in a host
# as written here, so the owner parses back unambiguously whatever dots and dashes the host
# name holds; every character is one S3 lists as safe in a key.
TEMP_NAME = re.compile(r"([A-Za-z.][A-Za-z.-]*)_([A-Za-z0-9.-]+)_([0-9]+)_([A-Za-z0-9-]+)")
# 0.1.0 named temp files `<prefix>-<pid>-<hex>` (blobs: `-<counter>` added), without a host.
LEGACY_TEMP_NAME = re.compile(r"[A-Za-z]+-([0-9]+)-[0-9a-f]+(?:-[0-9]+)?")
_host: str | None = None


def host_tag() -> str:
    """This host's name as temp names carry it: only letters, digits, `.` and `-`."""
    global _host
    if _host is None:
        import socket

        _host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:64] or "unknown"
    return _host


def temp_name(prefix: str, unique: str | None = None) -> str:
    """A temp file name that tells gc and fsck which process on which host made it."""
    return f"{prefix}_{host_tag()}_{os.getpid()}_{unique or os.urandom(6).hex()}"


def temp_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) of the process that made temp file `name`; None when the name tells none."""
    match = TEMP_NAME.fullmatch(name)
    if match:
        return match.group(2), int(match.group(3))
    match = LEGACY_TEMP_NAME.fullmatch(name)
    if match:  # 0.1.0 wrote no host: such a file is judged as this host's, by its pid
        return host_tag(), int(match.group(1))
    return None


_libc = None


def libc():
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util

        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _libc


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_noreplace_works: bool | None = None


def rename_noreplace(src: str, dst: str) -> bool:
    """rename(2) that never replaces (EEXIST instead); False where the system cannot.

    One system call where link(2) + unlink(2) take two: it counts with thousands of files.
    """
    global _noreplace_works
    if _noreplace_works is False:
        return False
    renameat2 = getattr(libc(), "renameat2", None)
    if renameat2 is None:
        _noreplace_works = False
        return False
    if renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        _noreplace_works = True
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) and not _noreplace_works:
        _noreplace_works = False  # e.g. NFS, or a kernel before 3.15
        return False
    raise OSError(err, os.strerror(err), dst)


# link(2) fails so where a filesystem offers no hard links (some SMB and FUSE mounts).
NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK)


def link_noreplace(src, dst) -> None:
    """Publish `src` at `dst` unless something is there (FileExistsError): link(2), or
    renameat2(RENAME_NOREPLACE) on a filesystem without hard links (then `src` is gone)."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS or not rename_noreplace(os.fspath(src), os.fspath(dst)):
            raise


def write_temp(tmp_dir: Path, data: bytes, fsync: bool, prefix: str = "rec") -> Path:
    """A fully written (and, with fsync, durable) temp file, ready to be linked or renamed."""
    path = tmp_dir / temp_name(prefix)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(tmp_dir: Path, final: Path, data: bytes, fsync: bool) -> None:
    """Atomically replace `final` with `data` (temp file, fsync, rename, fsync dir)."""
    tmp = write_temp(tmp_dir, data, fsync)
    try:
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(final.parent)


def create_file(tmp_dir: Path, final: Path, data: bytes, fsync: bool) -> bool:
    """Publish `data` at `final` only if nothing is there yet (link(2)); False on EEXIST."""
    tmp = write_temp(tmp_dir, data, fsync)
    try:
        link_noreplace(tmp, final)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    if fsync:
        fsync_dir(final.parent)
    return True


class NotRegularFile(OSError):
    """A registry file that is a directory, FIFO, socket or device: never read as data."""


def _file_type(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"


def read_regular(path: str | os.PathLike) -> bytes:
    """The bytes of a registry file, which must be a regular file (symlinks are followed)."""
    return read_regular_stat(path)[0]


def read_regular_stat(path: str | os.PathLike) -> tuple[bytes, os.stat_result]:
    """`read_regular`, with the stat of what was read.

    A FIFO would block the reader forever and a device (a symlink to /dev/zero) never
    ends, so anything else is refused with NotRegularFile before a byte is read. The
    stat before the open keeps a device from even being opened (opening a tape rewinds
    it); O_NONBLOCK and the fstat after it cover a swap in between.
    """
    import errno
    import stat

    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFile(errno.EINVAL, f"is {_file_type(mode)}, not a regular file", str(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(errno.EINVAL, f"is {_file_type(st.st_mode)}, not a regular file", str(path))
        chunks = []
        while True:
            chunk = os.read(fd, max(st.st_size + 1, 65536))
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)
