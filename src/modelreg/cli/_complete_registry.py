"""What tab completion reads from a registry: collection names, live versions, aliases
and a version's paths, read-only, through `layout` alone.

Standard library only, like `complete.py`, which imports it on a TAB that needs
registry contents. The layout module owns the paths, the patterns, finding the registry
and what a live collection is, and the library asks it the same questions, so TAB
offers exactly what `ls` lists. A format-1 registry (0.1.0, not yet upgraded) is read
by one function, `_format1_collection`, into the same state a format-2 collection has.
Anything unreadable simply offers nothing.
"""

from __future__ import annotations

import os

from .. import layout


class RegistryView:
    """A registry and the default entity and project, as the CLI sees them."""

    def __init__(self, path: str, environ, config: bytes = b""):
        self.path = path
        self.format = layout.config_format(config)
        self.entity = environ.get("MODELREG_ENTITY") or None
        self.project = environ.get("MODELREG_PROJECT") or None
        if not (self.entity and self.project):
            defaults = _config_defaults(config)
            self.entity = self.entity or _str(defaults.get("entity")) or "local"
            self.project = self.project or _str(defaults.get("project")) or "default"

    @classmethod
    def find(cls, root, environ) -> RegistryView | None:
        """`--root`, else MODELREG_DIR, else the nearest `.modelreg` walking up; None when
        there is none, or when its format is one this modelreg does not read (`ls` fails)."""
        path = layout.find_registry(root, environ)
        if path is None:
            return None
        config = layout.read_regular(os.path.join(path, layout.CONFIG))
        view = cls(path, environ, config or b"")
        # The library refuses to open these (exit 1 or 2), so every command would fail.
        readable = view.format in (1, layout.FORMAT) and (config is not None or not os.path.lexists(
            os.path.join(path, layout.CONFIG)))
        valid = layout.NAME_RE.fullmatch(view.entity) and layout.NAME_RE.fullmatch(view.project)
        return view if readable and valid else None

    # -- what there is -----------------------------------------------------------------

    def _claims(self, entity: str, project: str, start: str = "") -> list[tuple[str, str]]:
        """(name, kind) of every collection claimed in a project."""
        if self.format >= layout.FORMAT:
            return [(c["name"], c["kind"]) for c in layout.local_claims(self.path, entity, project, start)]
        base = os.path.join(self.path, "collections", entity, project)
        found = []
        for name in _subdirs(base):
            if name.casefold().startswith(start.casefold()):
                kind = _format1_kind(os.path.join(base, name))
                if kind:
                    found.append((name, kind))
        return found

    def _projects(self, entity: str) -> list[str]:
        return _subdirs(os.path.join(self.path, "names" if self.format >= layout.FORMAT else "collections", entity))

    def state(self, entity: str, project: str, name: str) -> dict:
        """The collection's state; one that cannot be read whole is empty (`ls NAME` fails)."""
        if self.format >= layout.FORMAT:
            state = layout.local_state(self.path, entity, project, name)
            return layout.empty_state() if state.get("unreadable") else state
        return _format1_collection(os.path.join(self.path, "collections", entity, project, name))

    def is_live(self, entity: str, project: str, name: str) -> bool:
        if self.format >= layout.FORMAT:
            return layout.local_is_live(self.path, entity, project, name)
        return layout.is_live_collection(self.state(entity, project, name))

    def _live_in(self, entity: str, project: str) -> bool:
        return any(self.is_live(entity, project, name) for name, _ in self._claims(entity, project))

    def names(self, incomplete: str, registered: bool = False) -> list[str]:
        """Collection names as typed: `name`, `project/name` or `entity/project/name`;
        those `ls` lists, no more."""
        parts = incomplete.split("/")
        if len(parts) == 1:
            entity, project, prefix = self.entity, self.project, ""
        elif len(parts) == 2:
            entity, project, prefix = self.entity, parts[0], parts[0] + "/"
        elif len(parts) == 3:
            entity, project, prefix = parts[0], parts[1], f"{parts[0]}/{parts[1]}/"
        else:
            return []
        out = []
        if layout.NAME_RE.fullmatch(entity) and layout.NAME_RE.fullmatch(project):
            for name, kind in self._claims(entity, project, parts[-1]):
                if (prefix + name).startswith(incomplete) and (not registered or kind == "registered") \
                        and self.is_live(entity, project, name):
                    out.append(prefix + name)
        if len(parts) == 2 and layout.NAME_RE.fullmatch(parts[0]):
            # `entity/` leads on to that entity's projects that hold something to list
            out += [f"{parts[0]}/{p}/" for p in self._projects(parts[0])
                    if layout.NAME_RE.fullmatch(p) and self._live_in(parts[0], p)]
        return out

    def collection(self, name: str) -> tuple[str, str, str] | None:
        """(entity, project, name) of an existing collection typed as `name`, `project/name`
        or `e/p/name`; None when there is none (another spelling is another name)."""
        parts = name.split("/")
        if len(parts) > 3 or not all(layout.NAME_RE.fullmatch(p) for p in parts):
            return None
        entity, project = self.entity, self.project
        if len(parts) == 3:
            entity, project = parts[0], parts[1]
        elif len(parts) == 2:
            project = parts[0]
        if self.format >= layout.FORMAT:
            claim = _load(os.path.join(self.path, layout.claim_key(entity, project, parts[-1])))
            exists = isinstance(claim, dict) and claim.get("name") == parts[-1]
        else:
            exists = os.path.isfile(os.path.join(self.path, "collections", entity, project, parts[-1],
                                                 "collection.json"))
        return (entity, project, parts[-1]) if exists else None

    def selectors(self, incomplete: str) -> list[str]:
        """`name:vN` for live versions, `name:alias` for aliases, and `name:latest`."""
        name = incomplete.partition(":")[0]
        where = self.collection(name)
        if where is None:
            return []
        state = self.state(*where)
        versions = layout.live_numbers(state)
        aliases = sorted(state["aliases"]) + ([layout.LATEST] if versions else [])
        return [f"{name}:v{n}" for n in versions] + [f"{name}:{a}" for a in sorted(aliases)]

    def aliases(self, name: str) -> list[str]:
        """The aliases of the collection `name` (a selector after it is ignored)."""
        where = self.collection(name.partition(":")[0])
        return sorted(self.state(*where)["aliases"]) if where else []

    # -- one version's files -----------------------------------------------------------

    def files(self, ref: str) -> list[str]:
        """Paths inside the version REF names (through a link to its source)."""
        name, _, selector = ref.partition(":")
        where = self.collection(name)
        if where is None:
            return []
        state = self.state(*where)
        summary = _select(state, selector or layout.LATEST, self._digest)
        doc = self._manifest(where, summary) if summary else None
        source = doc.get("source") if doc else None
        if isinstance(source, dict):
            try:
                at = (source["entity"], source["project"], source["name"])
                if not all(isinstance(p, str) and layout.NAME_RE.fullmatch(p) for p in at):
                    return []
                summary = self.state(*at)["versions"].get(int(source["version"]))
            except (KeyError, TypeError, ValueError):
                return []
            doc = self._manifest(at, summary) if summary and not summary.get("deleted") else None
        files = doc.get("files") if doc else None
        if not isinstance(files, list) or doc.get("deleted") is not None:
            return []
        return [f["path"] for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)]

    def _manifest(self, where: tuple[str, str, str], summary: dict) -> dict | None:
        if self.format < layout.FORMAT:
            return _load(summary["file"])
        digest = summary.get("manifest")
        if not isinstance(digest, str) or not layout.HEX64_RE.fullmatch(digest):
            return None
        doc = _load(os.path.join(self.path, layout.manifest_key(layout.collection_prefix(*where), digest)))
        if isinstance(doc, dict) and isinstance(summary.get("source"), dict):
            doc = {**doc, "source": summary["source"]}  # the record's word on the source, as the library takes it
        return doc

    def _digest(self, summary: dict) -> str:
        if "file" in summary:  # format 1: the digest is in the version file
            doc = _load(summary["file"])
            digest = doc.get("digest") if doc else None
            if not isinstance(digest, str) and doc and isinstance(doc.get("source"), dict):
                digest = doc.get("source_digest")
        else:
            digest = summary.get("digest")
        return digest if isinstance(digest, str) else ""


def _select(state: dict, selector: str, digest_of) -> dict | None:
    """The live summary a selector names: `latest`, `vN`, then an alias, then a digest
    prefix, as the library resolves it."""
    live = layout.live_numbers(state)
    if selector == layout.LATEST:
        number = live[-1] if live else None
    elif layout.VERSION_RE.fullmatch(selector):
        number = int(selector[1:])
    elif selector in state["aliases"]:
        number = state["aliases"][selector]
    elif layout.DIGEST_PREFIX_RE.fullmatch(selector):
        hits = [n for n in live if digest_of(state["versions"][n]).startswith(selector)]
        number = hits[0] if len(hits) == 1 else None
    else:
        number = None
    return state["versions"][number] if number in live else None


def _format1_collection(directory: str) -> dict:
    """A format-1 collection read into a layout state, as format-2 code's `ls` reads it:
    versions from `versions/v<N>.json` (a tombstone is deleted), aliases from
    `aliases/<alias>`, and emptied when every version is deleted and the last event of
    `history.jsonl` is `collection-deleted`. A summary names its version file."""
    state = layout.empty_state()
    try:
        with os.scandir(os.path.join(directory, "versions")) as it:
            for entry in it:
                match = layout.VERSION_FILE_RE.fullmatch(entry.name)
                if match:
                    summary = {"file": entry.path}
                    if _is_tombstone(entry.path):
                        summary["deleted"] = True
                    state["versions"][int(match.group(1))] = summary
    except OSError:
        pass
    try:
        names = os.listdir(os.path.join(directory, "aliases"))
    except OSError:
        names = []
    for alias in names:
        if layout.ALIAS_RE.fullmatch(alias):
            try:
                match = layout.ALIAS_LINE_RE.fullmatch(
                    (layout.read_regular(os.path.join(directory, "aliases", alias)) or b"").decode("ascii"))
            except UnicodeDecodeError:
                continue
            if match:
                state["aliases"][alias] = int(match.group(1))
    if state["versions"] and not layout.live_numbers(state):
        state["emptied"] = _last_event(os.path.join(directory, "history.jsonl")) == "collection-deleted"
    return state


def _format1_kind(directory: str) -> str | None:
    """A format-1 collection's kind; None when it is not (yet) a collection."""
    doc = _load(os.path.join(directory, "collection.json"))
    kind = doc.get("kind") if doc else None
    return kind if kind in layout.KINDS else None


def _last_event(path: str) -> str | None:
    """The last whole event of a format-1 history (a torn line is skipped, as `ls` does)."""
    import json

    for line in reversed((layout.read_regular(path) or b"").splitlines()):
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(event, dict):
            return event.get("event")
    return None


def _config_defaults(data: bytes) -> dict:
    if b"defaults" not in data:  # spares the tomllib import on most TABs
        return {}
    import tomllib

    try:
        defaults = tomllib.loads(data.decode()).get("defaults", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError):
        return {}
    return defaults if isinstance(defaults, dict) else {}


def _str(value) -> str | None:
    """A config value as the library reads it (`defaults.project = 7` is project "7")."""
    return None if value is None else str(value)


def _subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if e.is_dir() and layout.NAME_RE.fullmatch(e.name))
    except OSError:
        return []


def _load(path: str) -> dict | None:
    import json

    try:
        doc = json.loads(layout.read_regular(path) or b"null")
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _is_tombstone(path: str) -> bool:
    """Whether a format-1 version file is a tombstone, reading as little as it can: a
    manifest of thousands of files runs to megabytes, a tombstone to four short fields."""
    f = layout.open_regular(path)
    if f is None:
        return True  # unreadable: nothing to offer, as `ls` leaves it out
    try:
        with f:
            if os.fstat(f.fileno()).st_size > 4096:
                return False
            data = f.read()
    except OSError:
        return True
    if b'"deleted"' not in data:  # a live manifest or link, without parsing it
        return False
    import json

    try:
        doc = json.loads(data)
    except ValueError:
        return True
    return not isinstance(doc, dict) or "deleted" in doc
