"""The facade: one method per command. Returns values, raises typed errors, never prints."""

from __future__ import annotations

import fnmatch
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from . import changes, layout, policy
from . import manifest as mf
from .changes import Change
from .collections import Collection, Summary, iter_collection_ids
from .config import REGISTRY_DIR, Config, default_location, find_registry
from .errors import Conflict, Error, IntegrityError, InvalidInput, NotFound
from .locks import FileLock, WriterRegistration
from .records import AliasResult, CollectionInfo, Deleted, DiffResult, LogResult, PullResult, VersionInfo
from .refs import (DEFAULT_ENTITY, DEFAULT_PROJECT, DIGEST_PREFIX_RE, LATEST, VERSION_RE, CollectionId, Ref,
                   format_ref, parse_collection,
                   parse_ref, parse_selector, validate_alias, validate_name)
from .scan import basename, scan
from .storage import FsStorage
from .store import Store, io_error
from .util import now, replace_file, temp_name


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry, no USER: still record something
        return str(os.getuid())


# Documented limits (modelreg-log(1)). Metadata is read with every `ls NAME` and kept in
# each collection's index; a bound keeps every reader fast and within Python's recursion limit.
METADATA_MAX_DEPTH = 32  # levels of objects and lists, the top-level object included
METADATA_MAX_BYTES = 1 << 20  # as compact UTF-8 JSON, as it is stored
META_FILE_MAX_BYTES = 16 << 20  # a --meta-file larger than this is refused unread


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _utf8(text: str, what: str) -> str:
    """A string that will be written as UTF-8 JSON: lone surrogates (bytes that were not
    UTF-8 in argv or a file name) cannot be, and would fail only after the blobs are stored."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid UTF-8") from None
    return text


def _metadata_problem(metadata: dict) -> str | None:
    """Why `metadata` cannot be stored, or None. Iterative, so that no depth (nor a cycle,
    which only ever gets deeper) can exhaust the interpreter's stack."""
    stack: list[tuple[object, int]] = [(metadata, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list, tuple)):
            if depth > METADATA_MAX_DEPTH:
                return f"nests deeper than {METADATA_MAX_DEPTH} levels of objects and lists"
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        return f"has a key that is a {_type_name(key)}; keys must be strings"
                    stack.append((key, depth + 1))
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "holds a string that is not valid UTF-8"
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                return "holds NaN or Infinity, which JSON cannot represent"
        elif not (value is None or isinstance(value, int)):  # bool is an int
            return f"holds a {_type_name(value)}, which JSON cannot represent"
    return None


def check_metadata(metadata: object, what: str = "metadata") -> dict:
    """Metadata as it will be stored: a JSON object within the documented limits.

    Returns a copy made from its JSON, so that what is stored is exactly what readers
    will see (a tuple becomes a list) and later changes by the caller do not leak in.
    """
    if not isinstance(metadata, dict):
        raise InvalidInput(f"{what} must be a JSON object, not {_type_name(metadata)}")
    problem = _metadata_problem(metadata)
    if problem:
        raise InvalidInput(f"{what} {problem}",
                           hint="keep large or deeply nested data in a file of the version instead"
                           if problem.startswith("nests") else None)
    try:
        text = json.dumps(metadata, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (ValueError, TypeError) as exc:  # e.g. an int longer than Python will print
        raise InvalidInput(f"{what} cannot be written as JSON: {exc}") from None
    size = len(text.encode("utf-8"))
    if size > METADATA_MAX_BYTES:
        raise InvalidInput(f"{what} is {size} bytes as JSON; the limit is 1 MiB",
                           hint="keep large data in a file of the version instead")
    return json.loads(text)


def parse_metadata_value(text: str):
    """`-m key=value`: JSON when it parses (and is finite), else the plain string."""
    def reject(token):
        raise InvalidInput(f"metadata value {text!r} is not a finite number")

    try:
        return json.loads(text, parse_constant=reject)
    except InvalidInput:
        raise
    except RecursionError:  # valid JSON, only too deep for the parser: not a string to keep
        raise InvalidInput(f"metadata value nests deeper than {METADATA_MAX_DEPTH} levels of objects and lists") from None
    except ValueError:
        return text


def parse_metadata_items(items: list[str]) -> dict:
    result = {}
    for item in _str_list(items, "metadata items", one=False):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InvalidInput(f"invalid metadata {item!r}", hint="use -m KEY=VALUE")
        result[key.strip()] = parse_metadata_value(value)
    return check_metadata(result)


def load_meta_file(path: str | os.PathLike) -> dict:
    """A --meta-file: a UTF-8 JSON object. Missing is exit 3; anything else wrong, exit 2."""
    from .scan import shown_path

    path = _path_arg(path, "metadata file")
    shown = shown_path(path)
    try:
        # Read, not stat-then-read: `--meta-file <(jq ...)` is a pipe with no size.
        with open(path, "rb") as handle:
            raw = handle.read(META_FILE_MAX_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            raise InvalidInput(f"metadata file {shown} is a dangling symlink") from None
        raise NotFound(f"metadata file {shown} does not exist") from None
    except IsADirectoryError:
        raise InvalidInput(f"metadata file {shown} is a directory") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read metadata file {shown}: {exc.strerror}") from None
    if len(raw) > META_FILE_MAX_BYTES:
        raise InvalidInput(f"metadata file {shown} is larger than 16 MiB",
                           hint="metadata is limited to 1 MiB; keep large data in a file of the version")
    try:
        text = raw.decode("utf-8")  # a byte-order mark stays, and is refused as not JSON (RFC 8259 §8.1)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"metadata file {shown} is not UTF-8 text (byte {exc.start})",
                           hint="save it as UTF-8 JSON") from None

    def reject(token):
        raise InvalidInput(f"metadata file {shown} holds {token}, which JSON cannot represent")
    try:
        data = json.loads(text, parse_constant=reject)
    except RecursionError:
        raise InvalidInput(f"metadata file {shown} nests deeper than {METADATA_MAX_DEPTH} levels "
                           "of objects and lists") from None
    except ValueError as exc:
        raise InvalidInput(f"metadata file {shown} is not valid JSON: {exc}") from None
    return check_metadata(data, f"metadata file {shown}")


def _git_info(cwd: str) -> dict | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def check_log_options(metadata, description, run, inputs, force, reason, on_progress=None) -> tuple[dict, list[str]]:
    """Check `log`'s other arguments, before anything is scanned or written: (metadata, inputs).

    The CLI also runs it before a first `log` creates a registry.
    """
    metadata = check_metadata({} if metadata is None else metadata)
    _str_arg(description, "description", optional=True, stored=True)
    _str_arg(run, "run", optional=True, stored=True)
    _bool_arg(force, "force")
    _str_arg(reason, "reason", optional=True, stored=True)
    _callable_arg(on_progress, "on_progress")
    return metadata, _str_list(inputs, "inputs")


def _disk_errors(what: str):
    """An OSError from the disk (full, read-only, I/O) leaves a writing method as modelreg.Error."""
    import functools

    def decorate(method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except OSError as exc:
                raise io_error(exc, what) from None
        return wrapper
    return decorate


def prepare_log(paths, name: str | None, aliases, exclude, notify=None):
    """Check what `log` was given, before anything is written: (name, aliases, files).

    The CLI also runs it before a first `log` creates a registry, so that refused input
    leaves no registry behind.
    """
    paths = [_path_arg(p, "a path to log") for p in _items(paths, "paths", one=True)]
    name = _str_arg(name, "name", optional=True)
    exclude = _str_list(exclude, "exclude", one=False)
    if len(paths) > 1 and not name:
        raise InvalidInput("several paths need a name", hint="add -n NAME")
    if name is None:
        if not paths:
            raise InvalidInput("nothing to log")
        name = basename(Path(paths[0]))
    if ":" in name:
        raise InvalidInput(f"invalid name {name!r}: a name for log takes no selector")
    parse_collection(name, DEFAULT_ENTITY, DEFAULT_PROJECT)
    return name, _alias_list(aliases), scan(paths, exclude, notify)


class Registry:
    """A `.modelreg` directory. `notify(message)` receives notes meant for stderr."""

    def __init__(self, path: Path, notify=None) -> None:
        self.path = Path(path)
        self.notify = notify or (lambda message: None)
        self.config = Config.load(self.path / "config.toml")
        self.entity = os.environ.get("MODELREG_ENTITY") or self.config.get("defaults.entity")
        self.project = os.environ.get("MODELREG_PROJECT") or self.config.get("defaults.project")
        validate_name(self.entity, "entity")
        validate_name(self.project, "project")
        self.fsync = bool(self.config.get("core.fsync"))
        self.format = self.config.format
        self.gc_lock = self.path / (layout.GC_LOCK if self.format >= layout.FORMAT else layout.GC_LOCK_FORMAT1)
        self.storage = FsStorage(self.path, fsync=self.fsync)
        self.store = Store(self.path, fsync=self.fsync)
        self.created = False  # True when this call made the registry

    @classmethod
    def _made(cls, target: Path, notify) -> "Registry":
        path, created = _create_registry(target)
        registry = cls(path, notify)
        registry.created = created
        return registry

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | os.PathLike | None = None, notify=None) -> "Registry":
        """The registry at `root` (or MODELREG_DIR), else the nearest .modelreg upward."""
        return cls(find_registry(root), notify)

    @classmethod
    def init(cls, path: str | os.PathLike = ".", notify=None) -> "Registry":
        """Create `path/.modelreg` (or `path` itself if it is named .modelreg); idempotent."""
        target = Path(path).absolute()
        if target.name != REGISTRY_DIR:
            target = target / REGISTRY_DIR
        return cls._made(target, notify)

    @classmethod
    def open_or_init(cls, root=None, notify=None) -> "Registry":
        try:
            return cls.open(root, notify)
        except NotFound:
            registry = cls._made(default_location(root), notify)
            if registry.created and notify:
                notify(f"created a new registry at {registry.path}")
            return registry

    # -- refs ------------------------------------------------------------------------

    def parse(self, text: str) -> Ref:
        return parse_ref(text, self.entity, self.project)

    def collection(self, cid: CollectionId):
        """A collection of this registry: format 2's, or (read-only) format 1's."""
        if self.format >= layout.FORMAT:
            return changes.Collection(self.storage, cid)
        return Collection(self.path, cid, self.fsync)

    def _writable(self) -> None:
        if self.format < layout.FORMAT:
            raise Conflict(f"{self.path} is a format-1 registry (modelreg 0.1.0): it can be read, "
                           "not written, until it is upgraded",
                           hint="run `modelreg upgrade` once no 0.1.0 process uses it")

    def _collection_ids(self) -> list[CollectionId]:
        """Every collection whose name is claimed (format 2), or whose directory exists (format 1)."""
        if self.format < layout.FORMAT:
            return iter_collection_ids(self.path)
        found = []
        for item in self.storage.list("names/"):
            parts = item.key.split("/")
            if len(parts) != 4:
                continue
            try:
                claim = changes.parse_claim(self.storage.read(item.key), item.key)
            except (Error, OSError) as exc:
                self.notify(f"warning: skipping {item.key}: {getattr(exc, 'message', exc)}")
                continue
            if layout.NAME_RE.fullmatch(parts[1]) and layout.NAME_RE.fullmatch(parts[2]):
                found.append(CollectionId(parts[1], parts[2], claim["name"]))
        return sorted(found)

    def _stamped(self, events: list[dict]) -> list[dict]:
        """Policy events with the time and user every history event carries."""
        return [self._event(e["event"], **{k: v for k, v in e.items() if k != "event"}) for e in events]

    def _label(self, coll):
        return lambda number=None: self.short(coll.id, number)

    def existing(self, cid: CollectionId) -> Collection:
        coll = self.collection(cid)
        if not coll.exists():
            raise NotFound(f"no collection named {cid.short(self.entity, self.project)!r}",
                           hint="`modelreg ls` lists what there is")
        return coll

    def short(self, cid: CollectionId, number: int | None = None) -> str:
        return format_ref(cid, number, self.entity, self.project)

    def _short_full_ref(self, full: str) -> str:
        """Shorten a stored `entity/project/name:vN` for display."""
        head, _, selector = full.partition(":")
        parts = head.split("/")
        if len(parts) != 3:
            return full
        return f"{CollectionId(*parts).short(self.entity, self.project)}:{selector}"

    def _select(self, coll: Collection, selector: str | None) -> int:
        """The version number a selector names in `coll`: vN, then alias, then digest prefix."""
        label = self.short(coll.id)
        summaries = coll.summaries()
        live = [s for s in summaries if not s.deleted]
        broken = coll.broken  # only a tolerant collection leaves records out
        if selector is None or selector == LATEST:
            if broken and (not live or max(broken) > live[-1].version):
                raise broken[max(broken)]  # it may be the latest: never serve an older one instead
            if not live:
                raise NotFound(f"{label} has no versions")
            return live[-1].version
        match = VERSION_RE.fullmatch(selector)
        if match:
            number = int(match.group(1))
            if number in broken:
                raise broken[number]
            for s in summaries:
                if s.version == number:
                    if s.deleted:
                        raise NotFound(f"{label}:v{number} was deleted")
                    return number
            raise NotFound(f"{label}:v{number} does not exist")
        aliases = coll.aliases()
        if selector in aliases:
            return aliases[selector]
        if DIGEST_PREFIX_RE.fullmatch(selector):
            hits = [s.version for s in live if s.digest.startswith(selector)]
            if len(hits) > 1:
                raise InvalidInput(f"digest prefix {selector!r} is ambiguous in {label}: " + ", ".join(f"v{h}" for h in hits),
                                   hint="give more digits")
            if hits:
                return hits[0]
            if broken:
                first = min(broken)
                raise IntegrityError(f"no readable version of {label} has a digest starting {selector!r}, and "
                                     f"{label}:v{first} cannot be read: {broken[first].message}", hint=mf.FSCK_HINT)
        raise NotFound(f"{label} has no version or alias {selector!r}")

    def _locate(self, text: str):
        """(collection, number, record) for a ref; a link's own record, not its source."""
        ref = self.parse(text)
        coll = self.existing(ref.collection)
        coll.tolerant = True  # a bad record fails only a ref that needs it
        number = self._select(coll, ref.selector)
        record = coll.read(number)
        if isinstance(record, mf.Tombstone):
            raise NotFound(f"{self.short(coll.id, number)} was deleted")
        return coll, number, record

    def _source(self, link: mf.LinkRecord) -> mf.VersionManifest | None:
        """The artifact version a link points at, or None when the link is dangling."""
        coll = self.collection(link.source)
        try:
            record = coll.read(link.source_version)
        except NotFound:
            return None
        if not isinstance(record, mf.VersionManifest):
            return None
        if record.digest != link.source_digest:
            # Versions never change and numbers are never reused: this source was tampered with.
            raise IntegrityError(f"{self.short(link.source, link.source_version)} holds digest {record.digest[:12]}, "
                                 f"not the {link.source_digest[:12]} it was linked with; it was changed",
                                 hint=mf.FSCK_HINT)
        return record

    def _content(self, text: str):
        """(collection, number, record, manifest) following a link to its source; dangling -> NotFound."""
        coll, number, record = self._locate(text)
        if isinstance(record, mf.LinkRecord):
            source = self._source(record)
            if source is None:
                raise NotFound(f"{self.short(coll.id, number)} is a dangling link: "
                               f"{self.short(record.source, record.source_version)} was deleted")
            return coll, number, record, source
        return coll, number, record, record

    def resolve(self, text: str) -> mf.VersionManifest:
        """The artifact version manifest a ref names (through a link)."""
        return self._content(text)[3]

    # -- log -------------------------------------------------------------------------

    @_disk_errors("logging")
    def log(self, paths, name: str | None = None, *, aliases=(), metadata: dict | None = None,
            description: str = "", run: str | None = None, inputs=(), exclude=(), force: bool = False,
            reason: str | None = None, on_progress=None) -> LogResult:
        # Every check comes before the first write: a refused log leaves no blob, no collection.
        self._writable()
        metadata, inputs = check_log_options(metadata, description, run, inputs, force, reason, on_progress)
        name, aliases, files = prepare_log(paths, name, aliases, exclude, self.notify)
        cid = parse_collection(name, self.entity, self.project)
        input_records = [self._input(text) for text in inputs]
        coll = self.collection(cid)
        self._refuse_clash(coll, "artifact")
        producer = _utf8_safe(self._producer(run))
        protected = self._protected()
        with self._writer():
            from .statcache import StatCache

            stored = self.store.ingest([f.source for f in files], on_file=on_progress,
                                       stats=[f.stat for f in files], cache=StatCache(self.path))
            entries = tuple(mf.FileEntry(f.path, digest, size, f.executable)
                            for f, (digest, size) in zip(files, stored))
            from .hashing import version_digest
            digest = version_digest([(e.path, e.digest, e.size, e.executable) for e in entries])
            coll.ensure("artifact")
            created = now()
            manifest = mf.VersionManifest(
                artifact=cid, version=0, digest=digest, size=sum(e.size for e in entries), created=created,
                files=entries, metadata=metadata, description=description or "", inputs=tuple(input_records),
                producer={**producer, "time": created})
            stored_as: list[str] = []  # the manifest is written once, and only when it makes a version

            def build(state):
                for n in layout.live_numbers(state):
                    if state["versions"][n]["digest"] == digest:
                        new, events = policy.set_aliases(state["aliases"], n, aliases, protected=protected,
                                                         force=force, label=self._label(coll), reason=reason)
                        return (Change(self._stamped(events), new) if events else None), (n, False)
                if not stored_as:
                    stored_as.append(coll.put_manifest(manifest))
                number = state["next"]
                new, events = policy.set_aliases(state["aliases"], number, aliases, protected=protected,
                                                 force=force, label=self._label(coll), reason=reason)
                logged = self._event("logged", version=number, digest=digest, reason=reason)
                return Change([logged, *self._stamped(events)], new,
                              add={str(number): changes.summary_of(manifest, stored_as[0])}), (number, True)

            _, _, (number, new) = coll.commit(build)
        if not new:
            self.notify(f"content unchanged: {self.short(cid, number)} already holds these files")
        return self._log_result(coll, number, digest, new=new)

    def _writer(self):
        return WriterRegistration(self.path / "locks", self.gc_lock.name)

    def _refuse_clash(self, coll, kind: str) -> None:
        """Refuse, before anything is written, a name taken by the other kind or by another case.

        ensure() decides again, atomically, when it claims the name; this only moves the
        common refusal ahead of the blob writes.
        """
        claim = coll.claim()
        if claim is not None and (claim["name"] != coll.id.name or claim["kind"] != kind):
            coll.ensure(kind)  # raises the clash

    def _input(self, text: str) -> dict:
        coll, number, record, source = self._content(text)
        return {"ref": f"{source.artifact.full}:v{source.version}", "digest": source.digest}

    def _producer(self, run: str | None) -> dict:
        cwd = os.getcwd()
        producer = {
            "user": _user(),
            "host": socket.gethostname(),
            "cwd": cwd,
            "command": list(sys.argv),
        }
        git = _git_info(cwd)
        if git:
            producer["git"] = git
        if run is not None:
            producer["run"] = run
        return producer

    def _event(self, event: str, **fields) -> dict:
        data = {"time": now(), "event": event, "user": _user()}
        data.update({k: v for k, v in fields.items() if v is not None})
        return data

    def _log_result(self, coll: Collection, number: int, digest: str, new: bool, source: str | None = None) -> LogResult:
        return LogResult(self.short(coll.id, number), self.short(coll.id), coll.id.entity, coll.id.project,
                         number, digest, self._aliases_of(coll, number), new, source)

    # -- aliases ---------------------------------------------------------------------

    def _protected(self) -> list[str]:
        return list(self.config.get("aliases.protected"))

    def _expect_number(self, coll: Collection, expect: str | None):
        if expect is None:
            return None
        if expect == "none":
            return "none"
        if ":" in expect:
            # `show NAME:alias -q` prints a ref; accept it when it names this collection.
            parsed = self.parse(expect)
            if parsed.collection != coll.id or parsed.selector is None:
                raise InvalidInput(f"--expect {expect!r} names another collection than {self.short(coll.id)}",
                                   hint="give a selector: v<N>, an alias, or none")
            expect = parsed.selector
        match = VERSION_RE.fullmatch(expect)
        if match:
            # No alias points at a deleted or unknown number, so expecting one is stale (exit 4), not "not found".
            return int(match.group(1))
        return self._select(coll, parse_selector(expect))  # a malformed selector is bad input (exit 2)

    @_disk_errors("setting aliases")
    def alias(self, ref: str, aliases, *, expect: str | None = None, force: bool = False,
              reason: str | None = None) -> AliasResult:
        """Point each alias at REF's version in REF's collection, all or none."""
        _check_change(ref, force, reason)
        _str_arg(expect, "expect", optional=True)
        aliases = _alias_list(aliases)
        if not aliases:
            raise InvalidInput("no alias given")
        self._writable()
        parsed = self.parse(ref)
        coll = self.existing(parsed.collection)
        protected = self._protected()

        def build(state):
            number = self._select(coll, parsed.selector)
            new, events = policy.set_aliases(state["aliases"], number, aliases, protected=protected, force=force,
                                             expect=self._expect_number(coll, expect), label=self._label(coll),
                                             reason=reason)
            changed = tuple(e["alias"] for e in events)
            return (Change(self._stamped(events), new) if events else None), (number, changed)

        _, _, (number, changed) = coll.commit(build)
        return AliasResult(self.short(coll.id, number), self._aliases_of(coll, number), changed)

    @_disk_errors("removing aliases")
    def unalias(self, ref: str, aliases, *, force: bool = False, reason: str | None = None) -> dict[str, str]:
        """Remove aliases, all or none; returns alias -> the ref it pointed at.

        A bare name removes each alias wherever it points; `name:sel` requires that
        each points at that version.
        """
        _check_change(ref, force, reason)
        # A reserved name may still be removed: it may have been set before it was reserved.
        aliases = _unique([validate_alias(a, removing=True) for a in _listed(aliases)])
        if not aliases:
            raise InvalidInput("no alias given")
        self._writable()
        parsed = self.parse(ref)
        coll = self.existing(parsed.collection)
        protected = self._protected()

        def build(state):
            number = self._select(coll, parsed.selector) if parsed.selector is not None else None
            new, events = policy.remove_aliases(state["aliases"], aliases, number=number, protected=protected,
                                                force=force, label=self._label(coll), reason=reason)
            removed = {alias: self.short(coll.id, state["aliases"][alias]) for alias in aliases}
            return Change(self._stamped(events), new), removed

        return coll.commit(build)[2]

    def _aliases_of(self, coll: Collection, number: int) -> tuple[str, ...]:
        names = [a for a, n in coll.aliases().items() if n == number]
        if coll.latest() == number:
            names.append(LATEST)
        return tuple(sorted(names))

    # -- link ------------------------------------------------------------------------

    @_disk_errors("linking")
    def link(self, ref: str, registered: str, *, aliases=(), description: str = "", force: bool = False,
             reason: str | None = None) -> LogResult:
        _check_change(ref, force, reason)
        _str_arg(registered, "registered model")
        _str_arg(description, "description", optional=True, stored=True)
        aliases = _alias_list(aliases)
        if ":" in registered:
            raise InvalidInput(f"invalid registered model {registered!r}: it takes no selector")
        self._writable()
        target_id = parse_collection(registered, self.entity, self.project)
        _, _, _, source = self._content(ref)
        source_ref = f"{source.artifact.full}:v{source.version}"
        shown_source = self.short(source.artifact, source.version)
        target = self.collection(target_id)
        if target.exists():
            target.ensure("registered")  # a name clash is refused before anything is written
        protected = self._protected()

        def existing_link(state) -> int | None:
            for n in layout.live_numbers(state):
                summary = state["versions"][n]
                if summary.get("source") == {"entity": source.artifact.entity, "project": source.artifact.project,
                                             "name": source.artifact.name, "version": source.version} \
                        and summary["digest"] == source.digest:
                    return n
            return None

        def check_aliases(state, number):
            return policy.set_aliases(state["aliases"], number, aliases, protected=protected, force=force,
                                      label=self._label(target), reason=reason)

        if target.exists():  # refuse an alias change the link could not make before marking the source
            state = target.state()
            check_aliases(state, existing_link(state))

        def mark(state):
            # "Linked into" is committed in the source first: an `rm` of the source racing
            # this link is ordered with it in one sequence, so one of the two is refused.
            summary = state["versions"].get(source.version)
            if summary is None or summary.get("deleted") or summary["digest"] != source.digest:
                raise NotFound(f"{shown_source} was deleted")
            if target_id.full in state["marks"].get(source.version, []):
                return None, None
            return Change([], state["aliases"], marks=[{"version": source.version, "link": target_id.full}]), None

        record = mf.LinkRecord(0, source.artifact, source.version, source.digest, now(), description or "")
        stored_as: list[str] = []

        def build(state):
            n = existing_link(state)
            if n is not None:
                new, events = check_aliases(state, n)
                return (Change(self._stamped(events), new) if events else None), (n, False)
            if not stored_as:
                stored_as.append(target.put_manifest(record))
            number = state["next"]
            new, events = check_aliases(state, number)
            linked = self._event("linked", version=number, source=source_ref, digest=source.digest, reason=reason)
            return Change([linked, *self._stamped(events)], new,
                          add={str(number): changes.summary_of(record, stored_as[0])}), (number, True)

        # Registered as a writer from the mark to the link: gc (even --grace 0) then never
        # takes the mark or the link record for leftovers of a link cut short.
        with self._writer():
            self.collection(source.artifact).commit(mark)
            target.ensure("registered")
            _, _, (number, new) = target.commit(build)
        return self._log_result(target, number, source.digest, new=new, source=shown_source)

    def links_to(self, cid: CollectionId, number: int) -> list[str]:
        """Refs of the links (in any registered model) whose source is cid:vN."""
        return self._backlinks(cid).get(number, [])

    def _backlinks(self, cid: CollectionId, pending: bool = False) -> dict[int, list[str]]:
        """version number -> refs of the live links to it, over every registered model.

        Format 2 follows the source's "linked into" marks to the registered models they
        name; with `pending`, a mark whose registered model holds no link to the version
        at all (a link under way, or one cut short) counts too, as that model's name.
        """
        found: dict[int, list[str]] = {}
        if self.format >= layout.FORMAT:
            try:
                marks = self.collection(cid).marks()
            except Error:
                return found
            for number, targets in marks.items():
                wanted = {"entity": cid.entity, "project": cid.project, "name": cid.name, "version": number}
                for full in targets:
                    target = self.collection(CollectionId(*full.split("/")))
                    try:
                        summaries = target.summaries()
                    except Error:
                        continue
                    links = [s for s in summaries if s.source == wanted]
                    refs = [self.short(target.id, s.version) for s in links if not s.deleted]
                    if not links and pending:
                        refs = [f"{self.short(target.id)} (a link under way or cut short)"]
                    found.setdefault(number, []).extend(refs)
            return {n: refs for n, refs in found.items() if refs}
        for other in iter_collection_ids(self.path):
            coll = self.collection(other)
            coll.tolerant = True  # an unreadable link cannot be followed: leave it out, keep the rest
            try:
                if coll.kind != "registered":
                    continue
                summaries = coll.live()
            except Error:
                continue
            for s in summaries:
                src = s.source or {}
                if (src.get("entity"), src.get("project"), src.get("name")) == (cid.entity, cid.project, cid.name):
                    found.setdefault(src["version"], []).append(self.short(other, s.version))
        return found

    # -- reading ---------------------------------------------------------------------

    def show(self, ref: str) -> VersionInfo:
        _str_arg(ref, "ref")
        coll, number, record = self._locate(ref)
        aliases = self._aliases_of(coll, number)
        if coll.broken and max(coll.broken) > number:  # an unreadable newer record may be the latest
            aliases = tuple(a for a in aliases if a != LATEST)
        base = dict(ref=self.short(coll.id, number), collection=self.short(coll.id), entity=coll.id.entity,
                    project=coll.id.project, kind=coll.kind, version=number, aliases=aliases)
        if isinstance(record, mf.LinkRecord):
            source = self._source(record)
            source_ref = self.short(record.source, record.source_version)
            if source is None:
                return VersionInfo(**base, digest=record.source_digest, size=0, created=record.created, metadata={},
                                   description=record.description, source=source_ref, dangling=True)
            return VersionInfo(**base, digest=source.digest, size=source.size, created=record.created,
                               metadata=source.metadata, description=record.description or source.description,
                               inputs=self._inputs_view(source.inputs), producer=source.producer,
                               files=source.files, file_count=len(source.files),
                               links=tuple(self.links_to(source.artifact, source.version)), source=source_ref)
        return VersionInfo(**base, digest=record.digest, size=record.size, created=record.created,
                           metadata=record.metadata, description=record.description,
                           inputs=self._inputs_view(record.inputs), producer=record.producer, files=record.files,
                           file_count=len(record.files), links=tuple(self.links_to(coll.id, number)))

    def _inputs_view(self, inputs) -> tuple[dict, ...]:
        return tuple({**item, "ref": self._short_full_ref(str(item.get("ref", "")))} for item in inputs)

    def files(self, ref: str) -> tuple[mf.FileEntry, ...]:
        return self.resolve(ref).files

    def versions(self, name: str, *, sort: str | None = None, where=()) -> list[VersionInfo]:
        """The live versions of a collection (what `ls NAME` lists), read from summaries only."""
        _str_arg(name, "name")
        _str_arg(sort, "sort", optional=True)
        where = _str_list(where, "where", one=False)
        parsed = self.parse(name)
        if parsed.selector is not None:
            raise InvalidInput(f"{name!r} names a version, not a collection")
        coll = self.existing(parsed.collection)
        kind = coll.kind  # a collection.json that cannot be read fails the whole listing
        coll.tolerant = True
        summaries = coll.live()
        label = self.short(coll.id)
        for number, exc in coll.broken.items():
            self.notify(f"warning: left out {label}:v{number}: {exc.message}")
        aliases = coll.aliases()
        latest = summaries[-1].version if summaries else None
        if coll.broken and (latest is None or max(coll.broken) > latest):
            latest = None  # unknown: the newest record cannot be read
        by_number: dict[int, list[str]] = {}
        for alias, number in aliases.items():
            by_number.setdefault(number, []).append(alias)
        backlinks = self._backlinks(coll.id) if coll.kind == "artifact" else {}
        source_of = self._source_lookup()
        rows = []
        for s in summaries:
            names = by_number.get(s.version, []) + ([LATEST] if s.version == latest else [])
            base = dict(ref=f"{label}:v{s.version}", collection=label, entity=coll.id.entity,
                        project=coll.id.project, kind=kind, version=s.version, aliases=tuple(sorted(names)),
                        created=s.created)
            if s.source is not None:
                src_id = CollectionId(s.source["entity"], s.source["project"], s.source["name"])
                src = source_of(s.source, s.digest)
                dangling = src is None and not self._source_broken(f"{label}:v{s.version}", src_id,
                                                                   s.source["version"], s.digest)
                rows.append(VersionInfo(**base, digest=s.digest, size=0 if src is None else src.size,
                                        metadata={} if src is None else (src.metadata or {}),
                                        file_count=0 if src is None else src.files,
                                        source=self.short(src_id, s.source["version"]), dangling=dangling))
            else:
                rows.append(VersionInfo(**base, digest=s.digest, size=s.size, metadata=s.metadata or {},
                                        file_count=s.files, links=tuple(backlinks.get(s.version, ()))))
        rows = _filter(rows, where)
        return _sort(rows, sort)

    def _source_broken(self, ref: str, cid: CollectionId, number: int, digest: str) -> bool:
        """Whether a link's missing source is a bad record (warned), not a deleted one (dangling)."""
        link = mf.LinkRecord(0, cid, number, digest, "")
        try:
            self._source(link)
        except NotFound:
            return False
        except Error as exc:
            self.notify(f"warning: the source of {ref} cannot be used: {exc.message}")
            return True
        return False

    def _live_summaries(self, cid: CollectionId) -> list[Summary]:
        """A collection's live summaries; none when it is missing or unreadable."""
        coll = self.collection(cid)
        coll.tolerant = True
        try:
            return coll.live() if coll.exists() else []
        except Error:
            return []

    def _source_lookup(self):
        """source dict, digest -> the live summary a link points at, or None when dangling.

        Each source collection is read once per lookup object, however many links
        point into it.
        """
        cache: dict[CollectionId, dict[int, Summary]] = {}

        def lookup(source: dict, digest: str) -> Summary | None:
            cid = CollectionId(source["entity"], source["project"], source["name"])
            if cid not in cache:
                cache[cid] = {s.version: s for s in self._live_summaries(cid)}
            found = cache[cid].get(source["version"])
            return found if found is not None and found.digest == digest else None

        return lookup

    def collections(self, project: str | None = None, *, kind: str | None = None) -> list[CollectionInfo]:
        """Every collection (what `ls` lists); `project` is `project` or `entity/project`."""
        _str_arg(project, "project", optional=True)
        _str_arg(kind, "kind", optional=True)
        scope = None
        if project is not None:
            parts = project.strip("/").split("/")
            if len(parts) == 1:
                scope = (self.entity, validate_name(parts[0], "project"))
            elif len(parts) == 2:
                scope = (validate_name(parts[0], "entity"), validate_name(parts[1], "project"))
            else:
                raise InvalidInput(f"invalid project {project!r}", hint="use PROJECT/ or ENTITY/PROJECT/")
        if kind not in (None, "artifact", "registered"):
            raise InvalidInput(f"invalid kind {kind!r}", hint="use artifact or registered")
        result = []
        source_of = self._source_lookup()
        for cid in self._collection_ids():
            if scope and (cid.entity, cid.project) != scope:
                continue
            try:
                info = self._collection_info(cid, kind, source_of)
            except (Error, OSError) as exc:
                # One bad collection must not hide the others: say so, list the rest.
                why = exc.message if isinstance(exc, Error) else f"{exc.filename}: {exc.strerror or exc}"
                self.notify(f"warning: left out {self.short(cid)}: {why}")
                continue
            if info is not None:
                result.append(info)
        if scope and not result and not (self.path / "collections" / scope[0] / scope[1]).is_dir():
            raise NotFound(f"no project {scope[0]}/{scope[1]}")
        return result

    def _collection_info(self, cid: CollectionId, kind: str | None, source_of) -> CollectionInfo | None:
        """One row of `ls`, or None when it is not listed; a bad record is left out with a warning."""
        coll = self.collection(cid)
        coll.tolerant = True
        if kind and coll.kind != kind:
            return None
        if not coll.numbers():
            return None  # never held a version: a `log` or `link` that failed after creating it
        summaries = coll.summaries()
        for number, exc in coll.broken.items():
            self.notify(f"warning: left out {self.short(cid, number)}: {exc.message}")
        live = [s for s in summaries if not s.deleted]
        if not live and summaries and all(s.deleted for s in summaries) and not coll.broken:
            history = coll.history()
            if history and history[-1].get("event") == "collection-deleted":
                return None
        if coll.kind == "registered":
            sources = [source_of(s.source, s.digest) if s.source else None for s in live]
            size = sum(src.size for src in sources if src is not None)
        else:
            size = sum(s.size for s in live)
        latest = live[-1].version if live else None
        if coll.broken and (latest is None or max(coll.broken) > latest):
            latest = None  # unknown: the newest record cannot be read
        created = coll.info.get("created", "")
        times = [s.created for s in summaries] + [created if isinstance(created, str) else "", coll.history_time()]
        return CollectionInfo(cid.name, cid.entity, cid.project, coll.kind, len(live), latest, coll.aliases(), size,
                              max(times), display=self.short(cid))

    def history(self, ref: str) -> list[dict]:
        """A collection's events, oldest first; a selector keeps one version's or one alias's.

        The selector is read as everywhere (vN, then alias, then digest prefix), except that
        an alias that is no longer set still names its past events, and vN names a deleted
        version too: history outlives both.
        """
        _str_arg(ref, "ref")
        parsed = self.parse(ref)
        coll = self.existing(parsed.collection)
        events = coll.history()
        if parsed.selector is not None:
            events = self._events_of(coll, events, parsed.selector)
        shown = []
        for event in events:
            item = {k: v for k, v in event.items() if k != "holder"}
            item.setdefault("version", None)  # SPEC §3: every history object has `version`
            if isinstance(item.get("source"), str):
                item["source"] = self._short_full_ref(item["source"])
            shown.append(item)
        return shown

    def _events_of(self, coll: Collection, events: list[dict], selector: str) -> list[dict]:
        label = self.short(coll.id)

        def naming(numbers: set[int]) -> list[dict]:
            # A version's events: its logging or linking and deletion, and every alias set on
            # it, moved to or away from it, or removed from it.
            return [e for e in events if any(e.get(k) in numbers for k in ("version", "from", "to"))]

        match = VERSION_RE.fullmatch(selector)
        if match:
            number = int(match.group(1))
            if number not in {s.version for s in coll.summaries()} | {e.get("version") for e in events}:
                raise NotFound(f"{label}:v{number} does not exist", hint=f"`modelreg history {label}` lists every event")
            return naming({number})
        if selector == LATEST:
            return naming({self._select(coll, None)})
        if selector in coll.aliases() or any(e.get("alias") == selector for e in events):
            return [e for e in events if e.get("alias") == selector]
        if DIGEST_PREFIX_RE.fullmatch(selector):
            summaries = coll.summaries()
            digests = {s.digest for s in summaries if s.digest and s.digest.startswith(selector)}
            if len(digests) > 1:
                raise InvalidInput(f"digest prefix {selector!r} is ambiguous in {label}", hint="give more digits")
            if digests:  # equal content logged again after a deletion: both versions' events
                return naming({s.version for s in summaries if s.digest in digests})
        raise NotFound(f"{label} has no version, alias or digest {selector!r} in its history",
                       hint=f"`modelreg history {label}` lists every event")

    def diff(self, a: str, b: str) -> DiffResult:
        _str_arg(a, "ref")
        _str_arg(b, "ref")
        left, right = self.resolve(a), self.resolve(b)
        lf = {f.path: f for f in left.files}
        rf = {f.path: f for f in right.files}
        added = tuple(sorted(set(rf) - set(lf)))
        removed = tuple(sorted(set(lf) - set(rf)))
        changed = tuple(sorted(p for p in set(lf) & set(rf)
                               if (lf[p].digest, lf[p].executable) != (rf[p].digest, rf[p].executable)))
        meta, present = {}, {}
        for key in sorted(set(left.metadata) | set(right.metadata)):
            sides = (key in left.metadata, key in right.metadata)
            old, new = left.metadata.get(key), right.metadata.get(key)
            if old != new or type(old) is not type(new) or sides[0] != sides[1]:
                meta[key], present[key] = (old, new), sides
        return DiffResult(added, removed, changed, meta, present)

    # -- rm --------------------------------------------------------------------------

    @_disk_errors("deleting")
    def rm(self, ref: str, *, all: bool = False, force: bool = False, reason: str | None = None) -> list[Deleted]:
        """Delete a version (or every version with all=True), leaving tombstones."""
        _check_change(ref, force, reason)
        _bool_arg(all, "all")
        parsed = self.parse(ref)
        coll = self.existing(parsed.collection)
        if all and parsed.selector is not None:
            raise InvalidInput("--all takes a collection name, not a version", hint=f"use `modelreg rm {parsed.name} --all`")
        self._writable()

        def build(state):
            numbers = layout.live_numbers(state) if all else [self._select(coll, parsed.selector)]
            holders = {n: policy.holders(state["aliases"], n) for n in numbers}
            backlinks = self._backlinks(coll.id, pending=True) if coll.kind == "artifact" else {}
            if not force:
                for n in numbers:
                    if holders[n]:
                        raise Conflict(f"{self.short(coll.id, n)} holds alias {', '.join(holders[n])}",
                                       hint="move the alias first, or add --force to delete it with the version")
                    if backlinks.get(n):
                        raise Conflict(f"{self.short(coll.id, n)} is linked from {', '.join(backlinks[n])}",
                                       hint="add --force to delete it anyway; its links will dangle")
            events, deleted = [], []
            aliases = dict(state["aliases"])
            for n in numbers:
                for alias in holders[n]:
                    del aliases[alias]
                    events.append(self._event("alias-removed", alias=alias, version=n, reason=reason, **{"from": n}))
                events.append(self._event("deleted", version=n, reason=reason))
                deleted.append(Deleted(self.short(coll.id, n), n, tuple(holders[n])))
            if all:
                events.append(self._event("collection-deleted", reason=reason))
            return Change(events, aliases, delete=numbers), deleted

        return coll.commit(build)[2]

    # -- pull ------------------------------------------------------------------------

    def pull(self, ref: str, out: str | os.PathLike | None = None, *, mode: str | None = None, files=(),
             force: bool = False, verify: bool | None = None, on_progress=None) -> PullResult:
        from .materialize import materialize

        _str_arg(ref, "ref")
        out = None if out is None else _path_arg(out, "out")
        _str_arg(mode, "mode", optional=True)
        files = _str_list(files, "files", one=False)
        _bool_arg(force, "force")
        _bool_arg(verify, "verify", optional=True)
        _callable_arg(on_progress, "on_progress")
        coll, number, record, source = self._content(ref)
        mode = mode or self.config.get("pull.mode")
        target = Path(out) if out is not None else Path.cwd() / f"{coll.id.name}-v{number}"
        selected = list(source.files)
        if files:
            patterns = list(files)
            for pattern in patterns:
                if not any(fnmatch.fnmatchcase(f.path, pattern) for f in source.files):
                    raise NotFound(f"no file in {self.short(coll.id, number)} matches {pattern!r}")
            selected = [f for f in source.files if any(fnmatch.fnmatchcase(f.path, p) for p in patterns)]
        used, written = materialize(self.store, selected, target, mode=mode, force=force, verify=verify,
                                    notify=self.notify, on_progress=on_progress)
        return PullResult(self.short(coll.id, number), str(target), len(selected), sum(f.size for f in selected),
                          used, written)

    # -- maintenance -----------------------------------------------------------------

    def fsck(self, quick: bool = False, on_progress=None):
        """Check every blob, name claim, change record, manifest, snapshot, alias and link
        (a format-1 registry: its own files, read-only); list leftovers gc removes."""
        from .maintenance import fsck

        return fsck(self, quick=quick, on_progress=on_progress)

    def gc(self, dry_run: bool = False, grace=None):
        """Remove unreferenced blobs and leftovers older than `grace` (DURATION, seconds or None)."""
        from .maintenance import gc, grace_seconds

        grace_seconds(self, grace)  # a bad DURATION is a usage error (2) before anything else
        self._writable()  # format 1: gc would write; only `upgrade` may
        return gc(self, dry_run=dry_run, grace=grace)

    def upgrade(self) -> dict:
        """Upgrade a format-1 registry (0.1.0) to format 2 in place; nothing to do on format 2."""
        from .upgrade import upgrade

        try:
            result = upgrade(self, self.notify)
        except OSError as exc:
            raise io_error(exc, "upgrading the registry") from None
        if result["upgraded"]:
            self.__init__(self.path, self.notify)  # reopen: the format changed
        return result

    # -- config ----------------------------------------------------------------------

    def config_set(self, key: str, value) -> None:
        _str_arg(key, "key")
        if not isinstance(value, (str, bool)):
            _str_list(value, f"the value of {key}", one=False)  # aliases.protected takes a list
        Config(self.config.path, {}).set(key, value)  # a bad key or value is refused before any lock
        with self._config_lock():
            # Read-modify-write under the lock: a parallel `config set` of another key is kept.
            self.config = Config.load(self.config.path)
            self.config.set(key, value)
            self._save_config()

    def config_unset(self, key: str) -> bool:
        Config(self.config.path, {}).unset(key)  # an unknown key is refused before any lock
        with self._config_lock():
            self.config = Config.load(self.config.path)
            removed = self.config.unset(key)
            if removed:
                self._save_config()
        return removed

    def _config_lock(self) -> FileLock:
        return FileLock(self.path / "locks" / "config.lock", "the config", tmp_dir=self.path / "tmp")

    def _save_config(self) -> None:
        try:
            replace_file(self.path / "tmp", self.config.path, self.config.dumps(), self.fsync)
        except OSError as exc:
            raise io_error(exc, "writing the config") from None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# -- API argument checks: a wrong type is InvalidInput (exit 2) before anything is written,
# never a TypeError from deep inside, nor a record that readers then refuse.


def _str_arg(value, what: str, *, optional: bool = False, stored: bool = False):
    """A string argument; `stored` ones are written into JSON and must be valid UTF-8."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {_type_name(value)}")
    return _utf8(value, what) if stored else value


def _bool_arg(value, what: str, *, optional: bool = False):
    """True or False only: `force="no"` would otherwise count as yes."""
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be True or False, not {_type_name(value)}")
    return value


def _callable_arg(value, what: str):
    if value is not None and not callable(value):
        raise InvalidInput(f"{what} must be callable, not {_type_name(value)}")
    return value


def _path_arg(value, what: str) -> str:
    """A str or os.PathLike path. Bytes are refused: names are stored as UTF-8 text."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a str or os.PathLike path, not {_type_name(value)}")
    if not value:
        raise InvalidInput(f"{what} is empty")  # Path("") would quietly mean the current directory
    return value


def _items(items, what: str, *, one: bool) -> list:
    """A list argument. `one`: a lone string (or path) is one item, as in `aliases="best"`;
    else it is refused, since iterating it would give one-letter items."""
    if isinstance(items, (str, os.PathLike)):
        if one:
            return [items]
        raise InvalidInput(f"{what} must be a list, not one string", hint=f"pass a list: [{items!r}]")
    if items is None or isinstance(items, (bytes, bytearray, dict)):
        raise InvalidInput(f"{what} must be a list, not {_type_name(items)}")
    try:
        return list(items)
    except TypeError:
        raise InvalidInput(f"{what} must be a list, not {_type_name(items)}") from None


def _str_list(items, what: str, *, one: bool = True) -> list[str]:
    result = _items(items, what, one=one)
    for item in result:
        if not isinstance(item, str):
            raise InvalidInput(f"{what} must be strings, not {_type_name(item)}")
    return result


def _utf8_safe(value):
    """Producer info (argv, cwd) as text that can be stored: bytes that are not UTF-8 become
    `\\xNN`. It only describes where a version came from, so it is kept, not refused."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            try:
                return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:
                return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_utf8_safe(k): _utf8_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_utf8_safe(v) for v in value]
    return value


def _check_change(ref, force, reason) -> None:
    """The arguments every changing command shares."""
    _str_arg(ref, "ref")
    _bool_arg(force, "force")
    _str_arg(reason, "reason", optional=True, stored=True)


def _listed(items, what: str = "aliases") -> list[str]:
    """One string is one item (`aliases="best"`), not a sequence of one-letter aliases."""
    return _str_list(items, what)


def _alias_list(items) -> list[str]:
    """Aliases to set, validated and deduplicated; checked before anything is written.

    Two of them differing only by case, or one differing from the computed `latest`
    only by case, would be aliases of one collection that differ only by case (exit 4).
    """
    aliases = _unique([validate_alias(a) for a in _listed(items)])
    seen = {LATEST: LATEST}
    for alias in aliases:
        other = seen.setdefault(alias.casefold(), alias)
        if other != alias:
            raise Conflict(f"aliases {other!r} and {alias!r} differ only by case",
                           hint="aliases of one collection may not differ only by case")
    return aliases


def _field_value(row: VersionInfo, field: str):
    if field.startswith("metadata."):
        return row.metadata.get(field[len("metadata."):], _MISSING)
    return getattr(row, field)


_MISSING = object()
SORT_FIELDS = ("version", "created", "size")


def _sort(rows: list[VersionInfo], sort: str | None) -> list[VersionInfo]:
    if not sort:
        return rows
    descending = sort.startswith("-")
    field = sort.lstrip("-")
    if field not in SORT_FIELDS and not (field.startswith("metadata.") and len(field) > len("metadata.")):
        raise InvalidInput(f"cannot sort by {field!r}", hint="sort by version, created, size or metadata.KEY")

    def key(row: VersionInfo):
        value = _field_value(row, field)
        if value is _MISSING or value is None:
            return (1, 0, "")
        if isinstance(value, bool):
            return (0, 0, int(value))
        if isinstance(value, (int, float)):
            return (0, 0, value)
        return (0, 1, json.dumps(value, sort_keys=True) if not isinstance(value, str) else value)

    present = [r for r in rows if key(r)[0] == 0]
    missing = [r for r in rows if key(r)[0] == 1]
    try:
        present.sort(key=key, reverse=descending)
    except TypeError:
        present.sort(key=lambda r: str(key(r)), reverse=descending)
    return present + missing  # rows without the field come last either way


def _matches(value, wanted) -> bool:
    """`--where` equality of JSON values: same kind and equal, all the way down.

    `3` is the number (3.0 too), never the string "3"; `true` is not 1; `[1]` is not
    `[true]` (Python's == says both are).
    """
    if isinstance(value, bool) or isinstance(wanted, bool):
        return type(value) is type(wanted) and value == wanted
    if isinstance(value, (int, float)) or isinstance(wanted, (int, float)):
        return isinstance(value, (int, float)) and isinstance(wanted, (int, float)) and value == wanted
    if isinstance(value, list) or isinstance(wanted, list):
        return (isinstance(value, list) and isinstance(wanted, list) and len(value) == len(wanted)
                and all(_matches(a, b) for a, b in zip(value, wanted)))
    if isinstance(value, dict) or isinstance(wanted, dict):
        return (isinstance(value, dict) and isinstance(wanted, dict) and value.keys() == wanted.keys()
                and all(_matches(value[k], wanted[k]) for k in value))
    return type(value) is type(wanted) and value == wanted


def _filter(rows: list[VersionInfo], where) -> list[VersionInfo]:
    for clause in where:
        field, eq, text = clause.partition("=")
        if not eq or not field.startswith("metadata.") or len(field) <= len("metadata."):
            raise InvalidInput(f"invalid filter {clause!r}", hint="use --where metadata.KEY=VALUE")
        wanted = parse_metadata_value(text)  # exactly as `-m KEY=VALUE` stored it
        key = field[len("metadata."):]
        rows = [r for r in rows if key in r.metadata and _matches(r.metadata[key], wanted)]
    return rows


def _create_registry(target: Path) -> tuple[Path, bool]:
    """Create a registry atomically (built beside `target`, then renamed into place).

    Returns the path and whether this call created it.
    """
    if (target / "config.toml").is_file():
        return target, False
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            _populate(target)  # an empty .modelreg made by hand: fill it in place
            return target, True
        staging = parent / temp_name(".modelreg-init")
        staging.mkdir()
        try:
            _populate(staging)
            try:
                os.rename(staging, target)
            except OSError:
                if not (target / "config.toml").is_file():
                    raise
                return target, False  # a parallel first `log` made it: share that one
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise io_error(exc, f"creating a registry at {target}") from None
    return target, True


def _populate(path: Path) -> None:
    for sub in ("objects", "tmp", "locks/writers", "collections"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    config = path / "config.toml"
    if not config.exists():
        # A unique name: two first `log`s may fill one hand-made .modelreg at once.
        tmp = path / "tmp" / temp_name("config")
        tmp.write_bytes(Config(config, {"format": layout.FORMAT}).dumps())
        os.replace(tmp, config)
