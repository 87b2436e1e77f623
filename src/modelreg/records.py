"""The frozen values the API returns; each knows its SPEC §3 JSON document."""

from __future__ import annotations

from dataclasses import dataclass, field

from .manifest import FileEntry


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

    def to_json(self) -> dict:
        data = {
            "ref": self.ref, "collection": self.collection, "entity": self.entity, "project": self.project,
            "version": self.version, "digest": self.digest, "aliases": list(self.aliases), "new": self.new,
        }
        if self.source is not None:
            data["source"] = self.source
        return data


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
        data = {
            "ref": self.ref, "collection": self.collection, "entity": self.entity, "project": self.project,
            "kind": self.kind, "version": self.version, "digest": self.digest, "size": self.size,
            "created": self.created, "aliases": list(self.aliases), "metadata": self.metadata,
            "description": self.description, "inputs": list(self.inputs), "producer": self.producer,
            "files": [f.to_json() for f in self.files], "links": list(self.links),
        }
        if self.kind == "registered":
            data["source"] = self.source
            data["dangling"] = self.dangling
        return data

    def summary_json(self) -> dict:
        """The `ls NAME` row."""
        data = {
            "ref": self.ref, "version": self.version, "aliases": list(self.aliases), "digest": self.digest,
            "size": self.size, "files": self.file_count, "created": self.created, "metadata": self.metadata,
            "links": list(self.links),
        }
        if self.kind == "registered":
            data["source"] = self.source
            data["dangling"] = self.dangling
        return data


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
        return {
            "name": self.name, "entity": self.entity, "project": self.project, "kind": self.kind,
            "versions": self.versions, "latest": self.latest, "aliases": dict(self.aliases),
            "size": self.size, "updated": self.updated,
        }


@dataclass(frozen=True)
class AliasResult:
    ref: str
    aliases: tuple[str, ...]
    changed: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"ref": self.ref, "aliases": list(self.aliases), "changed": list(self.changed)}


@dataclass(frozen=True)
class PullResult:
    ref: str
    path: str
    files: int
    bytes: int
    mode: str
    written: int = 0

    def to_json(self) -> dict:
        return {"ref": self.ref, "path": self.path, "files": self.files, "bytes": self.bytes,
                "mode": self.mode, "written": self.written}


@dataclass(frozen=True)
class DiffResult:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    metadata: dict  # key -> (old, new); None on a side where the key is missing
    present: dict = field(default_factory=dict)  # key -> (in old, in new)

    def to_json(self) -> dict:
        return {"added": list(self.added), "removed": list(self.removed), "changed": list(self.changed),
                "metadata": {k: list(v) for k, v in self.metadata.items()}}

    @property
    def same(self) -> bool:
        return not (self.added or self.removed or self.changed or self.metadata)


@dataclass(frozen=True)
class Deleted:
    """One version removed by `rm`, with the aliases removed along with it."""

    ref: str
    version: int
    aliases: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"ref": self.ref, "version": self.version, "aliases": list(self.aliases)}
