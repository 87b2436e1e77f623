"""What tab completion reads from a registry: the on-disk format (SPEC §5), read-only.

Standard library only, like `complete.py`, which imports it on a TAB that needs
registry contents: collection names, live versions, aliases, and a version's paths.
Names come from directory listings; a version file is read only to tell a tombstone
from a live version (a large manifest never is), and the one manifest whose paths are
asked for.  Anything unreadable simply offers nothing.
"""

from __future__ import annotations

import os
import re

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"


def _is_name(name: str) -> bool:
    return re.fullmatch(_NAME, name) is not None


class RegistryView:
    """A `.modelreg` directory and the default entity and project, as the CLI sees them."""

    def __init__(self, path: str, environ):
        self.path = path
        self.entity = environ.get("MODELREG_ENTITY") or None
        self.project = environ.get("MODELREG_PROJECT") or None
        if not (self.entity and self.project):
            defaults = self._config_defaults()
            self.entity = self.entity or defaults.get("entity") or "local"
            self.project = self.project or defaults.get("project") or "default"

    @classmethod
    def find(cls, root, environ) -> RegistryView | None:
        """`--root`, else MODELREG_DIR, else the nearest `.modelreg` walking up."""
        root = root or environ.get("MODELREG_DIR")
        if root:
            root = os.path.abspath(os.path.expanduser(root))
            inner = os.path.join(root, ".modelreg")
            return cls(inner if os.path.isdir(inner) else root, environ)
        here = os.getcwd()
        while True:
            candidate = os.path.join(here, ".modelreg")
            if os.path.isdir(candidate):
                return cls(candidate, environ)
            parent = os.path.dirname(here)
            if parent == here:
                return None
            here = parent

    def _config_defaults(self) -> dict:
        try:
            with open(os.path.join(self.path, "config.toml"), "rb") as f:
                data = f.read()
        except OSError:
            return {}
        if b"defaults" not in data:  # spares the tomllib import on most TABs
            return {}
        import tomllib

        try:
            defaults = tomllib.loads(data.decode()).get("defaults", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            return {}
        return defaults if isinstance(defaults, dict) else {}

    def _dir(self, *parts: str) -> str:
        return os.path.join(self.path, "collections", *parts)

    def _subdirs(self, *parts: str) -> list[str]:
        try:
            with os.scandir(self._dir(*parts)) as it:
                return sorted(e.name for e in it if e.is_dir() and _is_name(e.name))
        except OSError:
            return []

    def names(self, incomplete: str, registered: bool = False) -> list[str]:
        """Collection names as typed: `name`, `project/name` or `entity/project/name`."""
        parts = incomplete.split("/")
        if len(parts) == 1:
            places = [((self.entity, self.project), "")]
        elif len(parts) == 2:
            places = [((self.entity, parts[0]), parts[0] + "/")]
        elif len(parts) == 3:
            places = [((parts[0], parts[1]), f"{parts[0]}/{parts[1]}/")]
        else:
            return []
        out = []
        for (entity, project), prefix in places:
            if not (_is_name(entity) and _is_name(project)):
                continue
            for name in self._subdirs(entity, project):
                if not (prefix + name).startswith(incomplete):
                    continue
                path = self._dir(entity, project, name)
                kind = self._kind(path)
                if kind and (not registered or kind == "registered") and self._is_live(path):
                    out.append(prefix + name)
        if len(parts) == 2 and _is_name(parts[0]):
            # `entity/` leads on to that entity's projects
            out += [f"{parts[0]}/{p}/" for p in self._subdirs(parts[0])]
        return out

    @staticmethod
    def _kind(path: str) -> str | None:
        """The collection's kind; None when it is not (yet) a collection."""
        try:
            with open(os.path.join(path, "collection.json"), "rb") as f:
                data = f.read()
        except OSError:
            return None
        if b'"registered"' not in data:
            return "artifact"  # the common case, without importing json
        import json

        doc = json.loads(data)
        registered = isinstance(doc, dict) and doc.get("kind") == "registered"
        return "registered" if registered else "artifact"

    @classmethod
    def _is_live(cls, path: str) -> bool:
        """Whether any version is live: `ls` hides a collection whose versions are all
        deleted, and so does completion.  The newest is nearly always live."""
        return any(not _is_tombstone(f) for _, f in reversed(cls._version_files(path)))

    def collection(self, name: str) -> str | None:
        """The directory of a collection named `name`, `project/name` or `e/p/name`."""
        parts = name.split("/")
        if len(parts) > 3 or not all(_is_name(p) for p in parts):
            return None
        entity, project = self.entity, self.project
        if len(parts) == 3:
            entity, project = parts[0], parts[1]
        elif len(parts) == 2:
            project = parts[0]
        path = self._dir(entity, project, parts[-1])
        return path if os.path.isfile(os.path.join(path, "collection.json")) else None

    def selectors(self, incomplete: str) -> list[str]:
        """`name:vN` for live versions, `name:alias` for aliases, and `name:latest`."""
        name = incomplete.partition(":")[0]
        path = self.collection(name)
        if path is None:
            return []
        versions = self.live_versions(path)
        aliases = self.aliases(path) + (["latest"] if versions else [])
        return [f"{name}:v{n}" for n in versions] + [f"{name}:{a}" for a in sorted(aliases)]

    @staticmethod
    def _version_files(path: str) -> list[tuple[int, str]]:
        found = []
        try:
            with os.scandir(os.path.join(path, "versions")) as it:
                for entry in it:
                    m = re.fullmatch(r"v(0|[1-9][0-9]*)\.json", entry.name)
                    if m:
                        found.append((int(m.group(1)), entry.path))
        except OSError:
            return []
        return sorted(found)

    @classmethod
    def live_versions(cls, path: str) -> list[int]:
        return [n for n, f in cls._version_files(path) if not _is_tombstone(f)]

    @staticmethod
    def aliases(path: str) -> list[str]:
        try:
            names = os.listdir(os.path.join(path, "aliases"))
        except OSError:
            return []
        pattern = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
        return sorted(
            a for a in names if re.fullmatch(pattern, a) and not a.endswith(".lock")
        )

    def files(self, ref: str) -> list[str]:
        """Paths inside the version REF names (through a link to its source)."""
        name, _, selector = ref.partition(":")
        path = self.collection(name)
        doc = self._manifest(path, selector or "latest") if path else None
        source = doc.get("source") if doc else None
        if isinstance(source, dict):
            try:
                path = self._dir(source["entity"], source["project"], source["name"])
                doc = _load(os.path.join(path, "versions", f"v{int(source['version'])}.json"))
            except (KeyError, TypeError, ValueError):
                return []
        if not doc or doc.get("deleted") is not None:
            return []
        files = doc.get("files")
        if not isinstance(files, list):
            return []
        return [f["path"] for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)]

    def _manifest(self, path: str, selector: str) -> dict | None:
        """The live record a selector names: `vN`, then an alias, then a digest prefix."""
        versions = self.live_versions(path)
        if selector == "latest":
            number = versions[-1] if versions else None
        elif re.fullmatch(r"v[0-9]+", selector):
            number = int(selector[1:])
        else:
            number = None
            try:
                with open(os.path.join(path, "aliases", selector)) as f:
                    number = int(f.read().strip().removeprefix("v"))
            except (OSError, ValueError):
                if re.fullmatch(r"[0-9a-f]{8,64}", selector):
                    docs = [_load(os.path.join(path, "versions", f"v{n}.json")) for n in versions]
                    hits = [d for d in docs if d and str(d.get("digest", "")).startswith(selector)]
                    return hits[0] if len(hits) == 1 else None
        if number not in versions:
            return None
        return _load(os.path.join(path, "versions", f"v{number}.json"))


def _load(path: str) -> dict | None:
    import json

    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _is_tombstone(path: str) -> bool:
    """Whether a version file is a tombstone, reading as little as it can: a manifest
    of thousands of files runs to megabytes, a tombstone to four short fields."""
    try:
        if os.stat(path).st_size > 4096:
            return False
        with open(path, "rb") as f:
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
