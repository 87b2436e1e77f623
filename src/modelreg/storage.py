"""The storage interface under the registry format (SPEC §5, §7): keys and bytes.

Every read and write of a registry's records goes through one narrow interface:

- `read(key)` and `read_token(key)`: the bytes (and an opaque token for a later
  replace-if-unchanged);
- `list(prefix, start_after)`: the keys under a prefix, sorted, optionally only those
  after a key (a prefix listing from a start key, as object stores offer);
- `create(key, data)`: create-only publish of complete bytes; False when the key exists;
- `replace(key, data, token)`: replace-if-unchanged; False when the key changed since
  the token was read (token None: the key must not exist yet);
- `put(key, data)`: unconditional replace, for derived caches only;
- `delete(key)`;
- `local_path(key)`: where the store is a local filesystem, the path, so that blobs can
  take the filesystem's fast paths (link, reflink, copy_file_range, O_DIRECT).

Keys are relative POSIX paths (`collections/local/default/resnet/changes/000000000003.json`).
Nothing here knows what the keys mean; `layout.py` names them and `changes.py` gives
them their protocol. The filesystem is the first implementation; `MemoryStorage` holds
a whole registry in a dict for tests (and can lose a response on purpose).
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import Error, LockTimeout
from .util import NotRegularFile, fsync_dir, link_noreplace, read_regular_stat


class KeyMissing(FileNotFoundError):
    """No object under that key."""


# A key naming a directory, FIFO, socket or device: never read as data.
NotRegular = NotRegularFile


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    mtime: float  # seconds since the epoch; the store's clock, not ours


class Storage:
    """What every location offers; see the module docstring."""

    url = ""

    def read(self, key: str) -> bytes:
        return self.read_token(key)[0]

    def read_token(self, key: str) -> tuple[bytes, str]:
        raise NotImplementedError

    def list(self, prefix: str, start_after: str | None = None) -> list[Listed]:
        raise NotImplementedError

    def create(self, key: str, data: bytes) -> bool:
        raise NotImplementedError

    def replace(self, key: str, data: bytes, token: str | None) -> bool:
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> bool:
        raise NotImplementedError

    def stat(self, key: str) -> Listed | None:
        raise NotImplementedError

    def local_path(self, key: str = "") -> Path | None:
        return None


def _token(st: os.stat_result) -> str:
    return f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}-{st.st_ctime_ns}"


class FsStorage(Storage):
    """A registry directory. Temporary files go to `tmp/`, on the same filesystem.

    create-only is link(2) of a complete (and, with fsync, durable) temp file, so a
    reader never sees a torn record and a second creator gets EEXIST; replace-if-unchanged
    compares the file's identity under a short lock file beside it (a filesystem has no
    conditional rename), then renames over it.
    """

    def __init__(self, root: str | os.PathLike, fsync: bool = True) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.fsync = fsync

    def path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def local_path(self, key: str = "") -> Path | None:
        return self.path(key)

    def read_token(self, key: str) -> tuple[bytes, str]:
        try:
            data, st = read_regular_stat(self.path(key))
        except (FileNotFoundError, NotADirectoryError):
            raise KeyMissing(errno.ENOENT, "no such key", key) from None
        return data, _token(st)

    def stat(self, key: str) -> Listed | None:
        try:
            st = os.stat(self.path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Listed(key, st.st_size, st.st_mtime)

    def list(self, prefix: str, start_after: str | None = None) -> list[Listed]:
        """Every regular file under `prefix` (a key prefix: `a/b/` lists a directory's
        tree, `a/b/c` the names in `a/b` starting with `c`), sorted by key."""
        head, _, stem = prefix.rpartition("/")
        base = self.path(head)
        found: list[Listed] = []

        def walk(directory: Path, rel: str, first: bool) -> None:
            try:
                entries = list(os.scandir(directory))
            except (FileNotFoundError, NotADirectoryError):
                return
            for entry in entries:
                if first and not entry.name.startswith(stem):
                    continue
                key = f"{rel}{entry.name}"
                try:
                    if entry.is_dir(follow_symlinks=False):
                        walk(Path(entry.path), key + "/", False)
                        continue
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                found.append(Listed(key, st.st_size, st.st_mtime))

        walk(base, f"{head}/" if head else "", True)
        found.sort(key=lambda item: item.key)
        if start_after is not None:
            found = [item for item in found if item.key > start_after]
        return found

    def _temp(self, data: bytes) -> str:
        from .util import write_temp

        return os.fspath(write_temp(self.root / "tmp", data, self.fsync))

    def create(self, key: str, data: bytes) -> bool:
        final = self.path(key)
        tmp = self._temp(data)
        try:
            try:
                link_noreplace(tmp, final)
            except FileNotFoundError:
                final.parent.mkdir(parents=True, exist_ok=True)
                link_noreplace(tmp, final)
        except FileExistsError:
            return False
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if self.fsync:
            fsync_dir(final.parent)
        return True

    def put(self, key: str, data: bytes) -> None:
        final = self.path(key)
        tmp = self._temp(data)
        try:
            try:
                os.replace(tmp, final)
            except FileNotFoundError:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        if self.fsync:
            fsync_dir(final.parent)

    def replace(self, key: str, data: bytes, token: str | None, wait: float = 10.0) -> bool:
        final = self.path(key)
        if token is None:
            return self.create(key, data)
        from .locks import FileLock

        try:
            with FileLock(final.with_name(final.name + ".lock"), key, timeout=wait, tmp_dir=self.root / "tmp"):
                try:
                    current = _token(os.stat(final))
                except FileNotFoundError:
                    return False
                if current != token:
                    return False
                self.put(key, data)
                return True
        except LockTimeout:
            return False

    def delete(self, key: str) -> bool:
        try:
            os.unlink(self.path(key))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True


class LostResponse(Error):
    """A request whose answer never came: it may or may not have taken effect."""


class MemoryStorage(Storage):
    """A registry held in a dict, for tests of the format without a disk.

    `lose_next_create` makes the next `create` take effect and then raise LostResponse,
    as a request whose answer was lost on the network does.
    """

    url = "memory:"

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, int, float]] = {}
        self._serial = 0
        self.lose_next_create = False
        self.requests = 0

    def _stamp(self) -> int:
        self._serial += 1
        return self._serial

    def read_token(self, key: str) -> tuple[bytes, str]:
        self.requests += 1
        try:
            data, serial, _ = self.objects[key]
        except KeyError:
            raise KeyMissing(errno.ENOENT, "no such key", key) from None
        return data, str(serial)

    def stat(self, key: str) -> Listed | None:
        self.requests += 1
        item = self.objects.get(key)
        return None if item is None else Listed(key, len(item[0]), item[2])

    def list(self, prefix: str, start_after: str | None = None) -> list[Listed]:
        self.requests += 1
        return [Listed(k, len(v[0]), v[2]) for k, v in sorted(self.objects.items())
                if k.startswith(prefix) and (start_after is None or k > start_after)]

    def create(self, key: str, data: bytes) -> bool:
        self.requests += 1
        if key in self.objects:
            return False
        self.objects[key] = (bytes(data), self._stamp(), time.time())
        if self.lose_next_create:
            self.lose_next_create = False
            raise LostResponse(f"no answer from {self.url} for {key}")
        return True

    def replace(self, key: str, data: bytes, token: str | None) -> bool:
        if token is None:
            return self.create(key, data)
        self.requests += 1
        item = self.objects.get(key)
        if item is None or str(item[1]) != token:
            return False
        self.objects[key] = (bytes(data), self._stamp(), time.time())
        return True

    def put(self, key: str, data: bytes) -> None:
        self.requests += 1
        self.objects[key] = (bytes(data), self._stamp(), time.time())

    def delete(self, key: str) -> bool:
        self.requests += 1
        return self.objects.pop(key, None) is not None
