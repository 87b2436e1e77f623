"""Turning the paths given to `log` into a checked list of files to store (SPEC §3)."""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidInput, NotFound
from .manifest import paths_problem


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative POSIX path in the version
    source: Path  # where the bytes are now
    size: int
    executable: bool
    stat: os.stat_result


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    if not patterns:
        return False
    parts = rel.split("/")
    for pattern in patterns:
        if fnmatch.fnmatchcase(rel, pattern) or any(fnmatch.fnmatchcase(p, pattern) for p in parts):
            return True
    return False


def shown_path(path: str | os.PathLike) -> str:
    """A path fit for a one-line message: bytes that are not UTF-8 as `\\xNN`, control
    characters escaped, never raw bytes or a line break on the user's terminal."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _utf8_name(rel: str, path: Path) -> None:
    """Manifests are UTF-8 JSON and object-store keys are UTF-8: a name that is not cannot be stored."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"cannot log {shown_path(path)}: its name is not valid UTF-8",
                           hint="rename it, or leave it out with --exclude") from None


class Scanner:
    def __init__(self, exclude: tuple[str, ...] = (), notify=None) -> None:
        self.exclude = tuple(exclude)
        self.notify = notify or (lambda message: None)
        self.files: list[SourceFile] = []

    def add_file(self, rel: str, path: Path, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device or special file"
            raise InvalidInput(f"{shown_path(path)} is {kind}; only regular files can be logged")
        _utf8_name(rel, path)
        self.files.append(SourceFile(rel, path, st.st_size, bool(st.st_mode & stat.S_IXUSR), st))

    def add(self, path: Path, rel: str) -> None:
        """Add `path` (a file or directory) under the relative name `rel` ('' = root)."""
        if rel and _excluded(rel, self.exclude):
            return  # a PATH named on the command line is a relative path of the version too
        st = _stat(path)
        if stat.S_ISDIR(st.st_mode):
            if basename(path) == ".modelreg":  # named on the command line: skipped like any other
                self.notify(f"skipping registry directory {shown_path(path.absolute())}")
                return
            self._walk(path, rel, {(st.st_dev, st.st_ino)})
        else:
            self.add_file(rel, path, st)

    def _walk(self, directory: Path, prefix: str, ancestors: set) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise InvalidInput(f"cannot read directory {shown_path(directory)}: {exc.strerror}") from None
        for entry in entries:
            rel = f"{prefix}/{entry.name}" if prefix else entry.name
            path = Path(entry.path)
            if entry.name == ".modelreg":
                self.notify(f"skipping registry directory {shown_path(path)}")
                continue
            if _excluded(rel, self.exclude):
                continue
            st = _stat(path)
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    raise InvalidInput(f"{shown_path(path)} is a symlink loop back to one of its parent directories")
                self._walk(path, rel, ancestors | {key})
            else:
                self.add_file(rel, path, st)

    def checked(self) -> list[SourceFile]:
        problem = paths_problem([f.path for f in self.files])
        if problem:
            raise InvalidInput(f"cannot log: {problem}")
        return sorted(self.files, key=lambda f: f.path)


def _stat(path: Path) -> os.stat_result:
    try:
        return os.stat(path)  # follows symlinks, as SPEC §3 asks
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            raise InvalidInput(f"{shown_path(path)} is a dangling symlink") from None
        raise NotFound(f"{shown_path(path)} does not exist") from None  # SPEC §4: not found is exit 3
    except OSError as exc:
        raise InvalidInput(f"cannot read {shown_path(path)}: {exc.strerror}") from None


def scan(paths: list[str | os.PathLike], exclude=(), notify=None) -> list[SourceFile]:
    """The files of one version: a single directory becomes the root; else basenames."""
    if not paths:
        raise InvalidInput("nothing to log", hint="give a directory or files")
    scanner = Scanner(tuple(exclude), notify)
    if len(paths) == 1:
        path = Path(paths[0])
        st = _stat(path)
        if stat.S_ISDIR(st.st_mode):
            scanner.add(path, "")
        else:
            scanner.add(path, basename(path))
    else:
        seen: dict[str, Path] = {}
        for raw in paths:
            path = Path(raw)
            base = basename(path)
            if base in seen:
                raise InvalidInput(f"{shown_path(seen[base])} and {shown_path(path)} have the same name {base!r}",
                                   hint="log them from a common directory instead")
            seen[base] = path
            scanner.add(path, base)
    files = scanner.checked()
    if not files:
        raise InvalidInput(f"no files to log in {', '.join(map(shown_path, paths))}")
    return files


def basename(path: Path) -> str:
    """The name a path is stored under: its last part, resolving `.` and `..`."""
    name = path.name
    if name in ("", ".", ".."):
        name = path.resolve().name
    return name
