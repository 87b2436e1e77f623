"""The facade: one method per command. Returns values, raises typed errors, never prints."""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path

from . import changes, layout, policy, provenance
from . import manifest as mf
from .changes import Change
from .collections import Collection, Summary, iter_collection_ids
from .config import REGISTRY_DIR, Config, default_location, find_registry, is_url, remote_location
from .errors import Conflict, Error, IntegrityError, InvalidInput, NotFound
from .locks import FileLock, WriterRegistration
from .records import AliasResult, CollectionInfo, Deleted, DiffResult, LogResult, PullResult, VersionInfo
from .refs import (DIGEST_PREFIX_RE, LATEST, VERSION_RE, CollectionId, Ref, format_ref, parse_collection,
                   parse_ref, parse_selector, validate_alias, validate_name)
from .arguments import (alias_list, bool_arg, callable_arg, check_change, check_log_options, listed, path_arg,
                        prepare_log, str_arg, str_list, unique, utf8_safe)
from .query import filter_rows, sort_rows
from .storage import FsStorage
from .store import Store, io_error
from .util import now, replace_file, temp_name


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


class Registry:
    """A registry at a location: a `.modelreg` directory, or an object-store URL (SPEC §7).

    `notify(message)` receives notes meant for stderr. `location` names it either way;
    `path` is its directory (None at a URL), `remote` the object-store half (None in a
    directory), and `store` the blobs read from: its `objects/`, or the local cache.
    """

    def __init__(self, path, notify=None, *, remote=None) -> None:
        self.notify = notify or (lambda message: None)
        self.remote = None
        self.created = False  # True when this call made the registry
        if remote is not None or is_url(os.fspath(path)):
            self._open_remote(os.fspath(path), remote)
            return
        self.path = Path(path)
        self.location = str(self.path)
        self._configure(Config.load(self.path / "config.toml"))
        self.fsync = bool(self.config.get("core.fsync"))
        self.gc_lock = self.path / (layout.GC_LOCK if self.format >= layout.FORMAT else layout.GC_LOCK_FORMAT1)
        self.storage = FsStorage(self.path, fsync=self.fsync)
        self.store = Store(self.path, fsync=self.fsync)

    def _configure(self, config: Config) -> None:
        """What the registry's config.toml decides, wherever it lives."""
        self.config = config
        self.entity = os.environ.get("MODELREG_ENTITY") or config.get("defaults.entity")
        self.project = os.environ.get("MODELREG_PROJECT") or config.get("defaults.project")
        validate_name(self.entity, "entity")
        validate_name(self.project, "project")
        self.format = config.format

    def _open_remote(self, url: str, remote=None) -> None:
        from .remote import Remote

        self.remote = remote = remote or Remote(url)
        self.path = None
        self.location = remote.url
        self._configure(Config.parse(remote.read_config()[0], f"{remote.url}/config.toml"))
        self.fsync = True  # a PUT is durable when it is answered
        if self.format < layout.FORMAT:
            raise IntegrityError(f"{remote.url}: a format-{self.format} registry; only format {layout.FORMAT} "
                                 "lives at a URL", hint="upgrade it where it was made, then copy it")
        self.gc_lock = None
        self.storage = remote.storage
        store = self.config.data.get("store")
        if not isinstance(store, dict) or store.get("create_only") is not True:
            # Made by hand (a copied directory): probed once, and the result recorded.
            remote.check_store()
            self._edit_config(lambda config: config.data.__setitem__("store", remote.probe_record()))

    @property
    def store(self) -> Store:
        return self.remote.cache if self.remote is not None else self._store

    @store.setter
    def store(self, value: Store) -> None:
        self._store = value

    @classmethod
    def _made(cls, target: Path, notify) -> "Registry":
        path, created = _create_registry(target)
        registry = cls(path, notify)
        registry.created = created
        return registry

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, root: str | os.PathLike | None = None, notify=None) -> "Registry":
        """The registry at `root` (or MODELREG_DIR; a path or a URL), else the nearest .modelreg upward."""
        url = remote_location(root)
        if url is not None:
            return cls(url, notify)
        return cls(find_registry(root), notify)

    @classmethod
    def init(cls, path: str | os.PathLike = ".", notify=None) -> "Registry":
        """Create `path/.modelreg` (or `path` itself if it is named .modelreg), or a registry
        at an object-store URL; idempotent."""
        url = remote_location(path)
        if url is not None:
            return cls._made_remote(url, notify)
        target = Path(path).absolute()
        if target.name != REGISTRY_DIR:
            target = target / REGISTRY_DIR
        return cls._made(target, notify)

    @classmethod
    def _made_remote(cls, url: str, notify) -> "Registry":
        from .remote import Remote

        remote = Remote(url)
        created = remote.create()
        registry = cls(url, notify, remote=remote)
        registry.created = created
        return registry

    @classmethod
    def open_or_init(cls, root=None, notify=None) -> "Registry":
        try:
            return cls.open(root, notify)
        except NotFound:
            url = remote_location(root)
            registry = cls._made_remote(url, notify) if url is not None else cls._made(default_location(root), notify)
            if registry.created and notify:
                notify(f"created a new registry at {registry.location}")
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
        self._warn_unlisted_claims()
        return sorted(found)

    def _warn_unlisted_claims(self) -> None:
        """A listing holds regular files only: on a filesystem, say which claims it passed
        over (a directory or FIFO where a claim should be), so no collection vanishes unsaid."""
        base = self.storage.local_path("names")
        if base is None:
            return
        for entity in _subdirectories(base):
            for project in _subdirectories(entity):
                for entry in _entries(project):
                    if not entry.is_file():
                        key = f"names/{os.path.basename(entity)}/{os.path.basename(project)}/{entry.name}"
                        self.notify(f"warning: skipping {key}: not a regular file")

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
        producer = utf8_safe(provenance.producer(run))
        protected = self._protected()
        with self._writer() as writer:
            if self.remote is not None:
                stored = self.remote.ingest(files, on_progress)
            else:
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
            if self.remote is not None and not writer.fresh_blobs():
                cache = self.remote.cache  # gc may have passed this writer over: check again
                self.remote.upload({e.digest: (cache.blob_path(e.digest), e.size) for e in entries}, verify=True)
            if self.remote is not None and os.environ.get("MODELREG_TEST_PAUSE_BEFORE_COMMIT"):
                import signal  # tests: a writer stalled between its blob checks and its commit

                os.kill(os.getpid(), signal.SIGSTOP)
            number, new = self._commit_version(coll, manifest, aliases, protected, force, reason)
        if not new:
            self.notify(f"content unchanged: {self.short(cid, number)} already holds these files")
        return self._log_result(coll, number, digest, new=new)

    def _commit_version(self, coll, manifest: mf.VersionManifest, aliases, protected, force: bool,
                        reason: str | None) -> tuple[int, bool]:
        """Make `manifest` (its blobs already stored) a version of `coll`: (number, new).

        The one commit path of `log` and `receive`: a live version with the same digest is
        reused (the aliases given are applied to it); otherwise the manifest is written and
        the next number is taken by the change record.
        """
        digest = manifest.digest
        stored_as: list[str] = []  # the manifest is written once, and only when it makes a version

        def build(state):
            for n in layout.live_numbers(state):
                if state["versions"][n]["digest"] == digest:
                    new, events = policy.set_aliases(state["aliases"], n, aliases, protected=protected,
                                                     force=force, label=self._label(coll), reason=reason)
                    return (Change(self._stamped(events), new) if events else None), (n, False)
            number = state["next"]
            new, events = policy.set_aliases(state["aliases"], number, aliases, protected=protected,
                                             force=force, label=self._label(coll), reason=reason)
            if not stored_as:  # after every check: a refused log stores no manifest
                stored_as.append(coll.put_manifest(manifest))
            logged = self._event("logged", version=number, digest=digest, reason=reason)
            return Change([logged, *self._stamped(events)], new,
                          add={str(number): changes.summary_of(manifest, stored_as[0])}), (number, True)

        return coll.commit_storing(build, stored_as)[2]

    @_disk_errors("receiving a version")
    def receive(self, manifest: mf.VersionManifest, cid: CollectionId, blobs: Store,
                inputs=(), on_progress=None) -> LogResult:
        """Store a version made elsewhere (`push`) as a version of artifact `cid` here.

        Only the blobs this registry lacks are copied from `blobs` (each verified against
        its digest as it is copied), before the manifest and its change record; the same
        file set already live in `cid` is reused. Metadata, description and producer
        travel; `inputs` are the manifest's inputs as this registry names them.
        """
        self._writable()
        coll = self.collection(cid)
        self._refuse_clash(coll, "artifact")
        if self.remote is not None and coll.exists():
            # Already there with every blob: write nothing, not even a lease (a re-push
            # sends no PUT). A missing blob takes the writing path, which uploads it again.
            there = next((s.version for s in coll.live() if s.digest == manifest.digest), None)
            if there is not None and not self.remote.missing({f.digest for f in manifest.files}):
                if on_progress:
                    on_progress(sum(f.size for f in manifest.files))
                return self._log_result(coll, there, manifest.digest, new=False)
        with self._writer() as writer:
            self._copy_blobs(manifest.files, blobs, on_progress)
            if self.remote is not None and not writer.fresh_blobs():
                self._copy_blobs(manifest.files, blobs)  # gc may have passed this writer over: check again
            coll.ensure("artifact")
            received = mf.VersionManifest(
                artifact=cid, version=0, digest=manifest.digest, size=manifest.size, created=manifest.created,
                files=manifest.files, metadata=dict(manifest.metadata), description=manifest.description,
                inputs=tuple(inputs), producer=dict(manifest.producer))
            number, new = self._commit_version(coll, received, (), self._protected(), False, None)
        return self._log_result(coll, number, manifest.digest, new=new)

    def _copy_blobs(self, files, blobs: Store, on_progress=None) -> int:
        """Copy the blobs of `files` that this store lacks from `blobs`; returns how many.

        `on_progress(n)` is told each blob's size, copied or found already here.
        """
        from .util import fsync_dir

        sizes = {f.digest: f.size for f in files}
        if self.remote is not None:
            return self.remote.upload({d: (blobs.blob_path(d), size) for d, size in sizes.items()}, verify=True,
                                      on_progress=on_progress)
        copied, touched = 0, set()
        for digest, size in sizes.items():
            if self.store.reuse(digest):
                if on_progress:
                    on_progress(size)
                continue  # already here: never copied again (a re-push copies nothing)
            source = blobs.blob_path(digest)
            if not source.is_file():
                raise IntegrityError(f"blob {digest[:12]} is missing from {blobs.root}", hint=mf.FSCK_HINT)
            item = self.store.stage(source, sync_now=self.fsync)
            if item.digest != digest:
                if item.tmp is not None:
                    Path(item.tmp).unlink(missing_ok=True)
                raise IntegrityError(f"blob {digest[:12]} of {blobs.root} is damaged: its content hashes to "
                                     f"{item.digest[:12]}", hint=mf.FSCK_HINT)
            touched.add(self.store.publish(item))
            copied += 1
            if on_progress:
                on_progress(size)
        if self.fsync:
            for directory in touched - {None}:
                fsync_dir(directory)
        return copied

    def push(self, refs, to, *, as_name: str | None = None, label: str | None = None, on_progress=None):
        """Copy versions to another registry (`to`: a Registry, a remote name or a directory).

        Returns one `Pushed` per version, sources (of links, of inputs) before what needs them.
        """
        from .push import push

        return push(self, refs, to, as_name=as_name, label=label, on_progress=on_progress)

    def _writer(self):
        """Announce this writer to gc: a writer entry here, a lease at a URL."""
        if self.remote is not None:
            return self.remote.lease()
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

    def _event(self, event: str, **fields) -> dict:
        data = {"time": now(), "event": event, "user": provenance.user()}
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
        check_change(ref, force, reason)
        str_arg(expect, "expect", optional=True)
        aliases = alias_list(aliases)
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
        check_change(ref, force, reason)
        # A reserved name may still be removed: it may have been set before it was reserved.
        aliases = unique([validate_alias(a, removing=True) for a in listed(aliases)])
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
        check_change(ref, force, reason)
        str_arg(registered, "registered model")
        str_arg(description, "description", optional=True, stored=True)
        aliases = alias_list(aliases)
        if ":" in registered:
            raise InvalidInput(f"invalid registered model {registered!r}: it takes no selector")
        self._writable()
        target_id = parse_collection(registered, self.entity, self.project)
        _, _, _, source = self._content(ref)
        source_ref = f"{source.artifact.full}:v{source.version}"
        shown_source = self.short(source.artifact, source.version)
        target = self.collection(target_id)
        self._refuse_clash(target, "registered")  # a clash of kind or case, before anything is written
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
            linked = existing_link(state)
            _, events = check_aliases(state, linked)
            if linked is not None and not events:  # already linked, nothing to change: write nothing
                return self._log_result(target, linked, source.digest, new=False, source=shown_source)

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
            number = state["next"]
            new, events = check_aliases(state, number)
            if not stored_as:
                stored_as.append(target.put_manifest(record))
            linked = self._event("linked", version=number, source=source_ref, digest=source.digest, reason=reason)
            return Change([linked, *self._stamped(events)], new,
                          add={str(number): changes.summary_of(record, stored_as[0])}), (number, True)

        # Registered as a writer from the mark to the link: gc (even --grace 0) then never
        # takes the mark or the link record for leftovers of a link cut short.
        with self._writer():
            self.collection(source.artifact).commit(mark)
            target.ensure("registered")
            _, _, (number, new) = target.commit_storing(build, stored_as)
        return self._log_result(target, number, source.digest, new=new, source=shown_source)

    def links_to(self, cid: CollectionId, number: int) -> list[str]:
        """Refs of the links (in any registered model) whose source is cid:vN."""
        return self._backlinks(cid).get(number, [])

    def _backlinks(self, cid: CollectionId, pending: bool = False, marks: dict | None = None) -> dict[int, list[str]]:
        """version number -> refs of the live links to it, over every registered model.

        Format 2 follows the source's "linked into" marks to the registered models they
        name; with `pending`, a mark whose registered model holds no link to the version
        at all (a link under way, or one cut short) counts too, as that model's name.
        """
        found: dict[int, list[str]] = {}
        if self.format >= layout.FORMAT:
            try:
                # The caller's state when it has one: a second read of a big collection's
                # snapshot costs as much as the first.
                marks = self.collection(cid).marks() if marks is None else marks
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
        str_arg(ref, "ref")
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
        str_arg(name, "name")
        str_arg(sort, "sort", optional=True)
        where = str_list(where, "where", one=False)
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
        marks = coll.marks() if self.format >= layout.FORMAT else None
        backlinks = self._backlinks(coll.id, marks=marks) if coll.kind == "artifact" else {}
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
        rows = filter_rows(rows, where)
        return sort_rows(rows, sort)

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
        str_arg(project, "project", optional=True)
        str_arg(kind, "kind", optional=True)
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
        if scope and not result and not self._project_exists(*scope):
            raise NotFound(f"no project {scope[0]}/{scope[1]}")
        return result

    def _project_exists(self, entity: str, project: str) -> bool:
        if self.remote is not None:
            return bool(self.storage.list(f"names/{entity}/{project}/"))
        return (self.path / "collections" / entity / project).is_dir()

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
        str_arg(ref, "ref")
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
        str_arg(a, "ref")
        str_arg(b, "ref")
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
        check_change(ref, force, reason)
        bool_arg(all, "all")
        parsed = self.parse(ref)
        coll = self.existing(parsed.collection)
        if all and parsed.selector is not None:
            raise InvalidInput("--all takes a collection name, not a version", hint=f"use `modelreg rm {parsed.name} --all`")
        self._writable()

        def build(state):
            numbers = layout.live_numbers(state) if all else [self._select(coll, parsed.selector)]
            holders = {n: policy.holders(state["aliases"], n) for n in numbers}
            backlinks = self._backlinks(coll.id, pending=True, marks=state["marks"]) if coll.kind == "artifact" else {}
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

        str_arg(ref, "ref")
        out = None if out is None else path_arg(out, "out")
        str_arg(mode, "mode", optional=True)
        files = str_list(files, "files", one=False)
        bool_arg(force, "force")
        bool_arg(verify, "verify", optional=True)
        callable_arg(on_progress, "on_progress")
        coll, number, record, source = self._content(ref)
        mode = mode or self._pull_mode()
        target = Path(out) if out is not None else Path.cwd() / f"{coll.id.name}-v{number}"
        selected = list(source.files)
        if files:
            patterns = list(files)
            for pattern in patterns:
                if not any(fnmatch.fnmatchcase(f.path, pattern) for f in source.files):
                    raise NotFound(f"no file in {self.short(coll.id, number)} matches {pattern!r}")
            selected = [f for f in source.files if any(fnmatch.fnmatchcase(f.path, p) for p in patterns)]
        if self.remote is not None:
            used, written = self._pull_remote(selected, target, mode, force, verify, on_progress)
        else:
            used, written = materialize(self.store, selected, target, mode=mode, force=force, verify=verify,
                                        notify=self.notify, on_progress=on_progress)
        return PullResult(self.short(coll.id, number), str(target), len(selected), sum(f.size for f in selected),
                          used, written)

    def _pull_remote(self, selected, target: Path, mode: str, force: bool, verify, on_progress):
        """Download what the cache lacks (verified before it enters), then materialize from it.

        A cached blob found damaged while it is copied is evicted, downloaded again and the
        pull run once more (the files already right are kept).
        """
        from .materialize import materialize

        if mode == "symlink":
            raise InvalidInput(f"--mode symlink cannot be used with a remote registry ({self.location}): links "
                               "into the local cache would dangle once it is pruned",
                               hint="use copy, hardlink or reflink (auto)")
        if mode == "hardlink" and verify is None:
            # The cache is not the registry: nothing else (no fsck) checks it, and a link
            # would hand the user a damaged blob as is. Checked, it is downloaded again.
            verify = True
        half = (lambda n: on_progress(n / 2)) if on_progress else None
        fresh = self.remote.fetch(selected, half)
        try:
            # A blob hashed as it was downloaded, moments ago, is copied without hashing it again.
            return materialize(self.store, selected, target, mode=mode, force=force, verify=verify,
                               notify=self.notify, on_progress=half, trusted=fresh)
        except IntegrityError:
            from .hashing import hash_file

            damaged = set()
            for entry in selected:
                try:
                    if hash_file(self.store.blob_path(entry.digest))[0] != entry.digest:
                        damaged.add(entry.digest)
                except FileNotFoundError:
                    damaged.add(entry.digest)
            if not damaged:
                raise
            for digest in damaged:
                self.notify(f"warning: cached blob {digest[:12]} was damaged; downloading it again")
                self.remote.evict(digest)
            self.remote.fetch(selected, local=False)
            return materialize(self.store, selected, target, mode=mode, force=force, verify=verify,
                               notify=self.notify)

    def _pull_mode(self) -> str:
        """The user's pull.mode, else the registry's (a default the user overrides), else auto."""
        from .config import UserConfig

        return UserConfig.load().get("pull.mode") or self.config.get("pull.mode")

    # -- maintenance -----------------------------------------------------------------

    def fsck(self, quick: bool = False, on_progress=None):
        """Check every blob, name claim, change record, manifest, snapshot, alias and link
        (a format-1 registry: its own files, read-only); list leftovers gc removes."""
        if self.remote is not None:
            from .remote_maintenance import fsck_remote

            return fsck_remote(self, quick=quick, on_progress=on_progress)
        from .maintenance import fsck

        return fsck(self, quick=quick, on_progress=on_progress)

    def gc(self, dry_run: bool = False, grace=None):
        """Remove unreferenced blobs and leftovers older than `grace` (DURATION, seconds or None)."""
        from .maintenance import gc, grace_seconds

        grace_seconds(self, grace)  # a bad DURATION is a usage error (2) before anything else
        self._writable()  # format 1: gc would write; only `upgrade` may
        if self.remote is not None:
            from .remote_maintenance import gc_remote

            return gc_remote(self, dry_run=dry_run, grace=grace)
        return gc(self, dry_run=dry_run, grace=grace)

    def upgrade(self) -> dict:
        """Upgrade a format-1 registry (0.1.0) to format 2 in place; nothing to do on format 2."""
        from .upgrade import upgrade

        if self.remote is not None:
            return {"upgraded": False, "collections": 0, "format": self.format}
        try:
            result = upgrade(self, self.notify)
        except OSError as exc:
            raise io_error(exc, "upgrading the registry") from None
        if result["upgraded"]:
            self.__init__(self.path, self.notify)  # reopen: the format changed
        return result

    # -- config ----------------------------------------------------------------------

    def config_set(self, key: str, value) -> None:
        str_arg(key, "key")
        if not isinstance(value, (str, bool)):
            str_list(value, f"the value of {key}", one=False)  # aliases.protected takes a list
        Config(self.config.path, {}).set(key, value)  # a bad key or value is refused before any lock
        if self.remote is not None:
            self._edit_config(lambda config: config.set(key, value))
            return
        with self._config_lock():
            # Read-modify-write under the lock: a parallel `config set` of another key is kept.
            self.config = Config.load(self.config.path)
            self.config.set(key, value)
            self._save_config()

    def config_unset(self, key: str) -> bool:
        Config(self.config.path, {}).unset(key)  # an unknown key is refused before any lock
        if self.remote is not None:
            return self._edit_config(lambda config: config.unset(key))
        with self._config_lock():
            self.config = Config.load(self.config.path)
            removed = self.config.unset(key)
            if removed:
                self._save_config()
        return removed

    def _edit_config(self, edit):
        """Read-modify-write of a remote registry's config.toml by replace-if-unchanged: a
        parallel change of another key is read again and kept, never overwritten."""
        storage, key = self.storage, "config.toml"
        for _ in range(50):
            raw, token = storage.read_token(key)
            config = Config.parse(raw, f"{self.location}/{key}")
            result = edit(config)
            if result is False:
                self.config = config
                return result
            if storage.replace(key, config.dumps(), token):
                self.config = config
                return True if result is None else result
        raise Error(f"{self.location}/{key} keeps changing under this command", hint="run it again")

    def _config_lock(self) -> FileLock:
        return FileLock(self.path / "locks" / "config.lock", "the config", tmp_dir=self.path / "tmp")

    def _save_config(self) -> None:
        try:
            replace_file(self.path / "tmp", self.config.path, self.config.dumps(), self.fsync)
        except OSError as exc:
            raise io_error(exc, "writing the config") from None


# -- API argument checks: a wrong type is InvalidInput (exit 2) before anything is written,
# never a TypeError from deep inside, nor a record that readers then refuse.


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
    _check_create_only(path)
    config = path / "config.toml"
    if not config.exists():
        # A unique name: two first `log`s may fill one hand-made .modelreg at once.
        tmp = path / "tmp" / temp_name("config")
        tmp.write_bytes(Config(config, {"format": layout.FORMAT}).dumps())
        os.replace(tmp, config)


def _check_create_only(path: Path) -> None:
    """Refuse a directory whose filesystem offers no create-only publish (SPEC §7).

    Every change record and lock is published by link(2), or by renameat2
    (RENAME_NOREPLACE) where link(2) is not offered (some SMB and FUSE mounts): without
    either, two writers could both take one number.
    """
    from .util import link_noreplace

    tmp = path / "tmp" / temp_name("probe")
    tmp.write_bytes(b"probe\n")
    other = tmp.with_name(tmp.name + "-2")
    try:
        link_noreplace(tmp, other)
    except OSError as exc:
        from .util import NO_HARD_LINKS

        if exc.errno not in NO_HARD_LINKS:
            raise
        raise Error(f"{path}: this filesystem offers neither link(2) nor renameat2(RENAME_NOREPLACE); "
                    "writers could overwrite each other's changes, so it cannot hold a registry",
                    hint="use a local disk, an NFS or SMB mount that offers hard links, or an s3:// URL") from None
    finally:
        for leftover in (tmp, other):
            leftover.unlink(missing_ok=True)


def _entries(path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as found:
            return list(found)
    except OSError:
        return []


def _subdirectories(path) -> list[str]:
    return [e.path for e in _entries(path) if e.is_dir(follow_symlinks=False)]
