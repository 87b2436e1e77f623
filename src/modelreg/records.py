"""The frozen values the API returns, and the output contract of every command.

Each output form of a command (`ls NAME`, `alias --delete`, ...) is declared once, as
a `Form`: its JSON keys and its `--plain` columns, in order, each with a one-line
description, and what `-q` prints. `to_json()` of the records here, the CLI's
`Output.report` (JSON, `--plain`, `-q`) and the man pages' OUTPUT sections are all
drawn from these declarations, so the three cannot drift apart. Human tables are
laid out by the CLI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import Any

from .manifest import FileEntry


@dataclass(frozen=True)
class Field:
    """One JSON key or `--plain` column of an output form."""

    name: str
    doc: str  # one line, for the man page
    attr: str | None = None  # the attribute (a history event's key) holding the value; default: `name`
    get: Callable[[Any], Any] | None = None  # or a function of the record
    when: Callable[[Any], bool] | None = None  # JSON: present only when this holds
    contract: bool = True  # listed in the man page, so never renamed without a "breaking" entry
    each: bool = False  # a `show --plain` field with one line per item, its parts as values

    @cached_property
    def value(self) -> Callable[[Any], Any]:
        """The value of this field in a record."""
        return self.get if self.get is not None else attrgetter(self.attr or self.name)


@dataclass(frozen=True)
class Form:
    """One output form of a command, as typed (`ls NAME`): its JSON keys and its `--plain`
    columns in order, and what `-q` prints."""

    name: str
    shape: str  # JSON: "object", or "list" of objects, one per item
    keys: tuple[Field, ...] | Callable[[], tuple[Field, ...]]
    columns: tuple[Field, ...]
    row: str | None = None  # what one --plain line is ("version"); None: the form prints one line
    fields: tuple[Field, ...] = ()  # `show`: one `field<TAB>value...` line per field, in this order
    lines: Callable[[Any], Iterable] | None = None  # what --plain writes a line for (default: the items)
    quiet: Callable[[Any], Iterable[str]] | None = None  # -q: the essential ids; None prints nothing
    open: bool = False  # records carry their own keys (history events): JSON passes them through

    def key_fields(self) -> tuple[Field, ...]:
        return self.keys() if callable(self.keys) else self.keys

    def contract_keys(self) -> list[str]:
        """The keys every JSON object of this form holds: listed in the man page."""
        return [f.name for f in self.key_fields() if f.contract and f.when is None]

    def json(self, record) -> dict:
        """One JSON object of this form."""
        return dict(record) if self.open else self._json(record)

    @cached_property
    def _json(self) -> Callable[[Any], dict]:
        # Built once per form: `ls NAME --json` of 10,000 versions makes 10,000 objects.
        fields = self.key_fields()
        if all(f.when is None for f in fields):
            names, getters = [f.name for f in fields], [f.value for f in fields]
            return lambda r: dict(zip(names, [g(r) for g in getters]))
        items = [(f.name, f.value, f.when) for f in fields]
        return lambda r: {n: g(r) for n, g, when in items if when is None or when(r)}

    def document(self, data):
        """The whole JSON document: one object, or a list of them for a list form."""
        return [self.json(r) for r in data] if self.shape == "list" else self.json(data)

    def plain(self, data) -> Iterable:
        """The `--plain` rows, values not yet formatted (see the CLI's `plain_value`)."""
        if self.fields:
            return self._field_lines(data)
        items = self.lines(data) if self.lines else data if self.shape == "list" else [data]
        return map(self._row, items)

    def _field_lines(self, record) -> Iterable[list]:
        for f in self.fields:
            if f.each:
                yield from ([f.name, *parts] for parts in f.value(record))
            else:
                yield [f.name, f.value(record)]

    @cached_property
    def _row(self) -> Callable[[Any], Iterable]:
        columns = self.columns
        if len(columns) > 1 and all(c.get is None for c in columns):
            # One C call per row: `ls NAME --plain` of 10,000 versions stays fast.
            by_attr = attrgetter(*(c.attr or c.name for c in columns))
            names = [c.attr or c.name for c in columns]
            return lambda r: [r.get(n) for n in names] if isinstance(r, dict) else by_attr(r)
        getters = [c.value for c in columns]
        return lambda r: [g(r) for g in getters]


def _list(name: str) -> Callable[[Any], list]:
    get = attrgetter(name)
    return lambda record: list(get(record))


# -- log and link ----------------------------------------------------------------------

_LOGGED = (
    Field("ref", "the version's reference, e.g. `resnet:v3`"),
    Field("collection", "the collection's name, in the shortest form that resolves"),
    Field("entity", "the collection's entity"),
    Field("project", "the collection's project"),
    Field("version", "the version number (an integer)"),
    Field("digest", "the version digest"),
    Field("aliases", "the version's aliases after the command", get=_list("aliases")),
    Field("new", "`false` when the content was already there (or already linked)"),
)
LOG = Form("log", "object", _LOGGED, _LOGGED, quiet=lambda r: [r.ref])
_SOURCE = Field("source", "the source's reference (the version linked)")
LINK = Form("link", "object", (*_LOGGED, _SOURCE), (*_LOGGED, _SOURCE), quiet=lambda r: [r.ref])


@dataclass(frozen=True)
class LogResult:
    """What `log` and `link` return."""

    ref: str
    collection: str
    entity: str
    project: str
    version: int
    digest: str
    aliases: tuple[str, ...]
    new: bool
    source: str | None = None

    @property
    def form(self) -> Form:
        return LOG if self.source is None else LINK

    def to_json(self) -> dict:
        return self.form.json(self)


# -- show and ls NAME ------------------------------------------------------------------


def _is_link(info) -> bool:
    return info.kind == "registered"


# A link's JSON adds these two; an artifact version's has neither.
_LINK_KEYS = (
    Field("source", "a link's source (a reference)", when=_is_link),
    Field("dangling", "`true` when a link's source was deleted", when=_is_link),
)


def _files_json(info) -> list[dict]:
    return [FILE.json(f) for f in info.files]


SHOW = Form(
    "show", "object",
    keys=(
        Field("ref", "the version's reference, in the shortest form that resolves"),
        Field("collection", "the collection's name"),
        Field("entity", "the collection's entity"),
        Field("project", "the collection's project"),
        Field("kind", "`artifact` or `registered`"),
        Field("version", "the version (or link) number"),
        Field("digest", "the version digest (a link's: its source's)"),
        Field("size", "the total size of the files, in bytes"),
        Field("created", "when the version (or link) was made"),
        Field("aliases", "the aliases pointing at it", get=_list("aliases")),
        Field("metadata", "the metadata, an object"),
        Field("description", "the description"),
        Field("inputs", "the versions it was made from: objects with `ref` and `digest`", get=_list("inputs")),
        Field("producer", "who made it: user, host, cwd, command, time, git, run"),
        Field("files", "its files, objects as in `ls REF`", get=_files_json),
        Field("links", "the references of the links to it", get=_list("links")),
        *_LINK_KEYS,
    ),
    columns=(Field("field", "the field's name"), Field("value", "its value (two or four for `input` and `file`)")),
    row="field",
    fields=(
        Field("ref", "the reference"),
        Field("collection", "the collection's name"),
        Field("entity", "the entity"),
        Field("project", "the project"),
        Field("kind", "`artifact` or `registered`"),
        Field("version", "the number"),
        Field("digest", "the version digest"),
        Field("size", "the size in bytes"),
        Field("created", "the time it was made"),
        Field("aliases", "its aliases"),
        Field("metadata", "the metadata, compact JSON"),
        Field("description", "the description"),
        Field("input", "per input: its reference and digest", each=True,
              get=lambda info: [[i.get("ref"), i.get("digest")] for i in info.inputs]),
        Field("producer", "the producer, compact JSON"),
        Field("links", "the links to it"),
        Field("source", "a link's source (`-` for an artifact version)"),
        Field("dangling", "whether a link's source was deleted"),
        Field("file", "per file: path, size, digest, executable", each=True,
              get=lambda info: [[f.path, f.size, f.digest, f.executable] for f in info.files]),
    ),
    quiet=lambda info: [info.ref],
)

VERSIONS = Form(
    "ls NAME", "list",
    keys=(
        Field("ref", "the version's reference"),
        Field("version", "the version number"),
        Field("aliases", "its aliases", get=_list("aliases")),
        Field("digest", "the version digest"),
        Field("size", "the total size in bytes"),
        Field("files", "the number of files", attr="file_count"),
        Field("created", "when it was logged (or linked)"),
        Field("metadata", "the metadata, an object"),
        Field("links", "the references of the links to it", get=_list("links")),
        *_LINK_KEYS,
    ),
    columns=(
        Field("ref", "the version's reference"),
        Field("version", "the version number"),
        Field("aliases", "its aliases"),
        Field("digest", "the version digest"),
        Field("size", "the total size in bytes"),
        Field("files", "the number of files", attr="file_count"),
        Field("created", "when it was logged (or linked)"),
        Field("links", "the references of the links to it"),
        Field("source", "a link's source (`-` for an artifact version)"),
        Field("metadata", "the metadata, compact JSON"),
    ),
    row="version",
    quiet=lambda versions: (v.ref for v in versions),
)


@dataclass(frozen=True)
class VersionInfo:
    """One version (or link) as `show` and `ls NAME` present it."""

    ref: str
    collection: str
    entity: str
    project: str
    kind: str
    version: int
    digest: str
    size: int
    created: str
    aliases: tuple[str, ...]
    metadata: dict
    description: str = ""
    inputs: tuple[dict, ...] = ()
    producer: dict = field(default_factory=dict)
    files: tuple[FileEntry, ...] = ()
    file_count: int = 0
    links: tuple[str, ...] = ()
    source: str | None = None
    dangling: bool = False

    def to_json(self) -> dict:
        return SHOW.json(self)

    def summary_json(self) -> dict:
        """The `ls NAME` row."""
        return VERSIONS.json(self)


# -- ls and ls REF ---------------------------------------------------------------------

_COLLECTION = (
    Field("name", "the collection's name, without entity and project"),
    Field("entity", "its entity"),
    Field("project", "its project"),
    Field("kind", "`artifact` or `registered`"),
    Field("versions", "the number of live versions"),
    Field("latest", "the highest live version number (none when no version is left)"),
    Field("aliases", "each alias with its version number", get=lambda c: dict(c.aliases)),
    Field("size", "the size of its live versions' files, in bytes"),
    Field("updated", "the time of its last event"),
)
COLLECTIONS = Form("ls", "list", _COLLECTION, _COLLECTION, row="collection",
                   quiet=lambda collections: (c.display for c in collections))

# Keys in the order of the manifest's file entries (`FileEntry.to_json`), columns as `ls REF` shows them.
FILE = Form(
    "ls REF", "list",
    keys=(
        Field("path", "the file's relative path"),
        Field("digest", "the BLAKE3 digest of its content"),
        Field("size", "its size in bytes"),
        Field("executable", "whether its executable bit is set"),
    ),
    columns=(
        Field("path", "the file's relative path"),
        Field("size", "its size in bytes"),
        Field("digest", "the BLAKE3 digest of its content"),
        Field("executable", "whether its executable bit is set"),
    ),
    row="file",
    quiet=lambda files: (f.path for f in files),
)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    entity: str
    project: str
    kind: str
    versions: int
    latest: int | None
    aliases: dict
    size: int
    updated: str
    display: str = ""

    def to_json(self) -> dict:
        return COLLECTIONS.json(self)


# -- alias -----------------------------------------------------------------------------

ALIAS = Form(
    "alias", "object",
    keys=(
        Field("ref", "the version's reference"),
        Field("aliases", "every alias of the version after the change", get=_list("aliases")),
        Field("changed", "the aliases that changed", get=_list("changed"), contract=False),
    ),
    columns=(Field("ref", "the version's reference"), Field("aliases", "every alias of the version after the change")),
    quiet=lambda r: [r.ref],
)
# The record is `Registry.unalias`'s {alias: ref of the version it pointed at}.
UNALIAS = Form(
    "alias --delete", "object",
    keys=(Field("removed", "the aliases removed: objects with `alias` and `ref`, the version it pointed at",
                get=lambda removed: [{"alias": a, "ref": r} for a, r in removed.items()]),),
    columns=(Field("alias", "the alias removed", get=lambda item: item[0]),
             Field("ref", "the version it pointed at", get=lambda item: item[1])),
    row="alias removed",
    lines=lambda removed: removed.items(),
    quiet=lambda removed: removed,
)


@dataclass(frozen=True)
class AliasResult:
    ref: str
    aliases: tuple[str, ...]
    changed: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return ALIAS.json(self)


# -- pull ------------------------------------------------------------------------------

_PULLED = (
    Field("ref", "the version's reference"),
    Field("path", "the directory written"),
    Field("files", "the number of files selected"),
    Field("bytes", "their size in bytes"),
    Field("mode", "the mode used (`auto` reports `reflink` or `copy`)"),
)
PULL = Form("pull", "object", (*_PULLED, Field("written", "the number of files written now", contract=False)),
            _PULLED, quiet=lambda r: [r.path])


@dataclass(frozen=True)
class PullResult:
    ref: str
    path: str
    files: int
    bytes: int
    mode: str
    written: int = 0

    def to_json(self) -> dict:
        return PULL.json(self)


# -- diff ------------------------------------------------------------------------------


def _differences(result) -> list[tuple]:
    """`diff --plain`'s lines: files first, sorted by path, then metadata keys."""
    from json import dumps

    files = sorted([("added", p) for p in result.added] + [("removed", p) for p in result.removed]
                   + [("changed", p) for p in result.changed], key=lambda row: row[1])
    rows = [(change, path, None, None) for change, path in files]
    rows += [("metadata", key, *(dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
                                 if present else None for value, present in zip(values, result.present[key])))
             for key, values in result.metadata.items()]
    return rows


DIFF = Form(
    "diff", "object",
    keys=(
        Field("added", "paths only in the second version", get=_list("added")),
        Field("removed", "paths only in the first", get=_list("removed")),
        Field("changed", "paths whose content or executable bit differ", get=_list("changed")),
        Field("metadata", "each differing key with `[old, new]`",
              get=lambda r: {k: list(v) for k, v in r.metadata.items()}),
    ),
    columns=(
        Field("change", "`added`, `removed`, `changed` or `metadata`", get=lambda row: row[0]),
        Field("name", "the path, or the metadata key", get=lambda row: row[1]),
        Field("old", "the old metadata value, compact JSON", get=lambda row: row[2]),
        Field("new", "the new metadata value, compact JSON", get=lambda row: row[3]),
    ),
    row="difference",
    lines=_differences,
    quiet=lambda r: sorted((*r.added, *r.removed, *r.changed)),
)


@dataclass(frozen=True)
class DiffResult:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    metadata: dict  # key -> (old, new); None on a side where the key is missing
    present: dict = field(default_factory=dict)  # key -> (in old, in new)

    def to_json(self) -> dict:
        return DIFF.json(self)

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed or self.metadata)


# -- history ---------------------------------------------------------------------------

_EVENT = (
    Field("time", "when it happened"),
    Field("event", "`logged`, `linked`, `alias-set`, `alias-moved`, `alias-removed`, `deleted`, "
                   "`collection-deleted`"),
    Field("user", "who did it"),
    Field("version", "the version it concerns (none for `collection-deleted`)"),
    Field("alias", "the alias set, moved or removed"),
    Field("from", "the version an alias moved from"),
    Field("to", "the version an alias moved to"),
    Field("source", "a link's source"),
    Field("reason", "the `--reason` given"),
)
# Events are the stored records, passed through whole; these are the keys they may hold.
HISTORY = Form(
    "history", "list",
    keys=(*_EVENT[:4], *(Field(f.name, f.doc, when=lambda e, n=f.name: n in e) for f in _EVENT[4:]),
          Field("digest", "the version digest (`logged`, `linked`)", when=lambda e: "digest" in e),
          Field("host", "the host that made the change (not on events carried over from format 1)",
                when=lambda e: "host" in e)),
    columns=_EVENT,
    row="event",
    open=True,
)


# -- rm --------------------------------------------------------------------------------

DELETED = Form(
    "rm", "list",
    keys=(
        Field("ref", "the version's reference"),
        Field("version", "its number"),
        Field("aliases", "the aliases removed with it (by `--force`)", get=_list("aliases")),
    ),
    columns=(),
)
RM = Form(
    "rm", "object",
    keys=(Field("deleted", "the versions deleted: objects with `ref`, `version` and `aliases`",
                get=lambda deleted: DELETED.document(deleted)),),
    columns=DELETED.key_fields(),
    row="version deleted",
    lines=lambda deleted: deleted,
    quiet=lambda deleted: (d.ref for d in deleted),
)


@dataclass(frozen=True)
class Deleted:
    """One version removed by `rm`, with the aliases removed along with it."""

    ref: str
    version: int
    aliases: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return DELETED.json(self)


# -- gc and fsck (their results live in maintenance.py) --------------------------------

GC = Form(
    "gc", "object",
    keys=(
        Field("blobs", "the number of blobs removed (with `--dry-run`: that would be)"),
        Field("bytes", "their size in bytes"),
        Field("dry_run", "whether nothing was removed"),
        Field("tmp", "temporary files removed", contract=False),
        Field("locks", "stale locks removed", contract=False),
        Field("repaired", "torn history lines repaired", contract=False),
        Field("kept", "unreferenced blobs kept, younger than the grace period", contract=False),
        Field("grace", "the grace period, in seconds", contract=False),
        Field("removed", "what was removed: objects with `kind`, `object`, `message`, `bytes`",
              get=lambda r: [LEFTOVER.json(x) for x in r.removed], contract=False),
    ),
    columns=(
        Field("blobs", "the number of blobs removed"),
        Field("bytes", "their size in bytes"),
        Field("dry_run", "whether nothing was removed"),
    ),
)
PROBLEM = Form("fsck", "list", (Field("kind", "what was checked"), Field("object", "its path or reference"),
                                Field("message", "what is wrong")), columns=())
LEFTOVER = Form("fsck", "list", (*PROBLEM.key_fields(), Field("bytes", "its size")), columns=())
FSCK = Form(
    "fsck", "object",
    keys=(
        Field("ok", "`true` when there is no problem"),
        Field("problems", "objects with `kind`, `object` and `message`",
              get=lambda r: [PROBLEM.json(p) for p in r.problems]),
        Field("reclaimable", "leftovers `gc` removes: objects with `kind`, `object`, `message`, `bytes`",
              get=lambda r: [LEFTOVER.json(x) for x in r.reclaimable]),
        Field("reclaimable_bytes", "their size in bytes", contract=False),
        Field("dangling", "dangling links: objects with `link` and `source`", contract=False,
              get=lambda r: [{"link": link, "source": source} for link, source in r.dangling]),
        Field("checked", "how many blobs, bytes, versions, links and aliases were checked",
              get=lambda r: dict(r.checked), contract=False),
        Field("quick", "whether blobs were checked by size only", contract=False),
    ),
    columns=(
        Field("status", "`problem` or `reclaimable`", get=lambda row: row[0]),
        Field("kind", "what was checked: `blob`, `manifest`, `alias`, `link`, ...", get=lambda row: row[1].kind),
        Field("object", "its path in the registry or its reference", get=lambda row: row[1].object),
        Field("message", "what is wrong, or why it can go", get=lambda row: row[1].message),
    ),
    row="finding",
    lines=lambda r: [*(("problem", p) for p in r.problems), *(("reclaimable", x) for x in r.reclaimable)],
)


# -- init and config -------------------------------------------------------------------

# The record is the opened `Registry`.
INIT = Form(
    "init", "object",
    keys=(Field("path", "the registry's absolute path, or its URL", get=lambda reg: reg.location),
          Field("new", "`false` when it already existed", attr="created")),
    columns=(Field("path", "the registry's absolute path, or its URL", get=lambda reg: reg.location),
             Field("new", "`false` when it already existed", attr="created")),
    quiet=lambda reg: [reg.location],
)


def _formatted(value) -> str:
    from .config import format_value

    return format_value(value)


# The record is (key, value).
CONFIG_GET = Form(
    "config get", "object",
    keys=(Field("key", "the key", get=lambda kv: kv[0]), Field("value", "its value", get=lambda kv: kv[1])),
    columns=(Field("value", "its value (a list comma-separated)", get=lambda kv: _formatted(kv[1])),),
    quiet=lambda kv: [_formatted(kv[1])],
)


def _config_keys() -> tuple[Field, ...]:
    from .config import KEYS

    return tuple(Field(key, f"the value of `{key}`") for key in KEYS)


# The record is {key: value} for every key, defaults included, as `Config.items()` lists them.
CONFIG_LIST = Form(
    "config list", "object",
    keys=_config_keys,
    columns=(Field("key", "the key", get=lambda item: item[0]),
             Field("value", "its value (a list comma-separated)", get=lambda item: _formatted(item[1]))),
    row="key",
    lines=lambda values: values.items(),
    quiet=lambda values: values,
    open=True,
)

# Every form, in the order the man pages list them.
# The record is upgrade.upgrade()'s dict.
UPGRADE = Form(
    "upgrade", "object",
    keys=(Field("upgraded", "`true` when this run upgraded the registry, `false` when it was already format 2",
                get=lambda r: r["upgraded"]),
          Field("format", "the registry's format now", get=lambda r: r["format"]),
          Field("collections", "the number of collections upgraded", get=lambda r: r["collections"])),
    columns=(Field("upgraded", "whether this run upgraded the registry", get=lambda r: r["upgraded"]),
             Field("format", "the registry's format now", get=lambda r: r["format"]),
             Field("collections", "the number of collections upgraded", get=lambda r: r["collections"])),
)


# -- push and remote -------------------------------------------------------------------

_PUSHED = (
    Field("source", "the version's reference in this registry"),
    Field("target", "its reference in the target registry (numbers belong to each registry)"),
    Field("new", "`false` when the target already held the same file set (or link)"),
)
PUSH = Form(
    "push", "list",
    keys=(*_PUSHED, Field("to", "the remote's name or the directory, as given", contract=False)),
    columns=(_PUSHED[0], Field("to", "the remote's name or the directory, as given"), *_PUSHED[1:]),
    row="version pushed",
    quiet=lambda pushed: (p.target for p in pushed),
)


@dataclass(frozen=True)
class Pushed:
    """One version (or link) copied by `push`: its ref here and its ref at the target."""

    source: str
    target: str
    new: bool
    to: str

    def to_json(self) -> dict:
        return PUSH.json(self)


# The record is (name, {"url", "endpoint"}) per remote.
_REMOTE = (
    Field("name", "the remote's name", get=lambda item: item[0]),
    Field("url", "its location: an absolute directory or an object-store URL", get=lambda item: item[1]["url"]),
    Field("endpoint", "its endpoint URL, or null (`-` with `--plain`)", get=lambda item: item[1].get("endpoint")),
)
REMOTES = Form(
    "remote ls", "list", _REMOTE, _REMOTE, row="remote",
    quiet=lambda remotes: (name for name, _ in remotes),
)

# -- the local cache of remote registries' blobs -------------------------------------------

# The record is {"path", "blobs", "bytes"}.
_CACHE = (
    Field("path", "the cache directory", get=lambda r: r["path"]),
    Field("blobs", "the number of blobs in it", get=lambda r: r["blobs"]),
    Field("bytes", "their total size in bytes", get=lambda r: r["bytes"]),
)
CACHE = Form("cache", "object", _CACHE, _CACHE, quiet=lambda r: [r["path"]])
# The record is {"path", "removed", "bytes"}.
_PRUNED = (
    Field("path", "the cache directory", get=lambda r: r["path"]),
    Field("removed", "the number of blobs removed", get=lambda r: r["removed"]),
    Field("bytes", "the bytes freed", get=lambda r: r["bytes"]),
)
CACHE_PRUNE = Form("cache prune", "object", _PRUNED, _PRUNED)

FORMS: tuple[Form, ...] = (
    INIT, LOG, LINK, ALIAS, UNALIAS, COLLECTIONS, VERSIONS, FILE, SHOW, PULL, DIFF, HISTORY, RM, GC, FSCK,
    CONFIG_GET, CONFIG_LIST, UPGRADE, PUSH, REMOTES, CACHE, CACHE_PRUNE,
)
