"""`push`: copying versions from one registry to another, by digest (SPEC §7).

Every source version is resolved before anything is written, so a refused push creates
nothing at the target. The target is written only through its own `Registry.receive`
and `Registry.link`: blobs first (only the missing ones), then the manifest and the
change record, exactly as `log` commits. Numbers are the target's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import manifest as mf
from .arguments import callable_arg, str_arg, str_list
from .errors import InvalidInput, NotFound
from .records import Pushed
from .refs import CollectionId, parse_collection


@dataclass
class _Planned:
    coll: object  # the source collection
    number: int
    record: mf.Record
    explicit: bool  # named by a selector (a dangling link is then an error, not a skip)
    source: mf.VersionManifest | None = None  # a link's source; None for a dangling link


def push(source, refs, to, *, as_name: str | None = None, label: str | None = None,
         on_progress=None) -> list[Pushed]:
    refs = str_list(refs, "refs", one=True)
    if not refs:
        raise InvalidInput("no version given", hint="name a version (resnet:v3) or a collection (resnet)")
    str_arg(as_name, "as", optional=True)
    str_arg(label, "label", optional=True)
    callable_arg(on_progress, "on_progress")
    rename = None
    if as_name is not None:
        if ":" in as_name:
            raise InvalidInput(f"invalid --as {as_name!r}: it names a collection and takes no selector")
        rename = parse_collection(as_name, source.entity, source.project)
    plan = _plan(source, refs)
    if rename is not None and len({p.coll.id for p in plan}) > 1:
        raise InvalidInput("--as takes versions of one collection",
                           hint="push each collection on its own with its own --as")
    target, shown = _open_target(source, to, label)
    target._writable()  # a format-1 target refuses before a blob is copied
    pusher = _Pusher(source, target, shown, on_progress)
    for item in plan:
        dest = rename or item.coll.id
        if isinstance(item.record, mf.LinkRecord):
            pusher.link(item, dest)
        else:
            pusher.version(item.record, item.coll.id, item.number, dest)
    return pusher.results


def _plan(source, refs: list[str]) -> list[_Planned]:
    plan, seen = [], set()
    for text in refs:
        parsed = source.parse(text)
        coll = source.existing(parsed.collection)
        if parsed.selector is None:  # `push NAME`: every live version, oldest first
            numbers = [s.version for s in coll.live()]
            if not numbers:
                raise NotFound(f"{source.short(coll.id)} has no live versions to push")
        else:
            numbers = [source._select(coll, parsed.selector)]
        for number in numbers:
            if (coll.id, number) in seen:
                continue
            seen.add((coll.id, number))
            item = _Planned(coll, number, coll.read(number), parsed.selector is not None)
            if isinstance(item.record, mf.LinkRecord):
                item.source = source._source(item.record)
                if item.source is None and item.explicit:  # refused before the target is touched
                    raise NotFound(_dangling(source, item))
            plan.append(item)
    return plan


def _dangling(source, item: _Planned) -> str:
    link = item.record
    return (f"{source.short(item.coll.id, item.number)} is a dangling link: "
            f"{source.short(link.source, link.source_version)} was deleted")


def _open_target(source, to, label: str | None):
    from .config import resolve_location

    registry = type(source)  # the Registry class, without importing registry.py (which imports this)
    if isinstance(to, registry):
        return to, label or to.location
    str_arg(to, "to")
    location, shown = resolve_location(to)
    return registry.open_or_init(location, notify=source.notify), label or shown


class _Pusher:
    def __init__(self, source, target, shown: str, on_progress=None) -> None:
        self.source, self.target, self.shown = source, target, shown
        self.on_progress = on_progress
        self.results: list[Pushed] = []
        self.done: dict[tuple, object] = {}  # (source id, number, dest) -> the target's LogResult

    def _add(self, source_ref: str, result) -> None:
        if not any(r.source == source_ref and r.target == result.ref for r in self.results):
            self.results.append(Pushed(source_ref, result.ref, result.new, self.shown))

    def version(self, manifest: mf.VersionManifest, cid: CollectionId, number: int, dest: CollectionId):
        key = (cid, number, dest)
        if key in self.done:
            return self.done[key]
        inputs = [self._input(item) for item in manifest.inputs]
        if self.source.remote is not None:  # blobs are copied from the source's local cache
            self.source.remote.fetch(manifest.files)
        result = self.target.receive(manifest, dest, self.source.store, inputs, on_progress=self.on_progress)
        self.done[key] = result
        self._add(self.source.short(cid, number), result)
        return result

    def _input(self, item: dict) -> dict:
        """An input as the target names it: the same file set in the same artifact there."""
        ref, digest = str(item.get("ref", "")), item.get("digest")
        head, _, selector = ref.partition(":")
        parts = head.split("/")
        if len(parts) != 3 or not selector.startswith("v") or not selector[1:].isdigit():
            return dict(item)
        cid, number = CollectionId(*parts), int(selector[1:])
        there = self.target.collection(cid)
        if there.exists():
            for s in there.live():
                if s.digest == digest and s.source is None:
                    return {**item, "ref": f"{cid.full}:v{s.version}"}
        try:
            record = self.source.collection(cid).read(number)
        except NotFound:
            record = None
        if not isinstance(record, mf.VersionManifest) or record.digest != digest:
            self.source.notify(f"warning: input {self.source._short_full_ref(ref)} is no longer in this registry; "
                               "it is recorded as it was, by its digest")
            return dict(item)
        result = self.version(record, cid, number, cid)  # pushed first, under its own name
        return {**item, "ref": f"{cid.full}:v{result.version}"}

    def link(self, item: _Planned, dest: CollectionId) -> None:
        link, manifest = item.record, item.source
        source_ref = self.source.short(item.coll.id, item.number)
        if manifest is None:
            self.source.notify(f"warning: not pushed: {_dangling(self.source, item)}")
            return
        pushed = self.version(manifest, link.source, link.source_version, link.source)
        result = self.target.link(f"{link.source.full}:v{pushed.version}", dest.full,
                                  description=link.description)
        self._add(source_ref, result)
