"""Names, aliases and refs (SPEC §2): parsing, validation and shortest formatting.

Pure functions over strings; nothing here touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidInput
# Re-exported: the patterns are the layout's, declared once there (TAB reads them too).
from .layout import ALIAS_RE, DIGEST_PREFIX_RE, LATEST, NAME_RE, VERSION_RE  # noqa: F401

DEFAULT_ENTITY = "local"
DEFAULT_PROJECT = "default"


def _shown(text: str, limit: int = 60) -> str:
    """A user's string, quoted and cut, safe to put in a one-line message."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def validate_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid {what} {_shown(name)}",
            hint="names are 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
        )
    return name


def is_reserved_alias(alias: str) -> bool:
    """v<N>, `none` and names ending in `.lock`, in any case.

    Case is ignored because `V3` reads as a version to a person, and because an alias
    file `x.LOCK` is the same file as `x.lock` on a case-insensitive filesystem.
    """
    folded = alias.lower()
    return bool(VERSION_RE.fullmatch(folded)) or folded == "none" or folded.endswith(".lock")


def validate_alias(alias: str, *, settable: bool = True, removing: bool = False) -> str:
    """Check an alias name; `settable` also refuses `latest`, which is computed.

    `removing` lets a reserved name through, so that an alias set before it was
    reserved can still be removed.
    """
    if not isinstance(alias, str) or not ALIAS_RE.fullmatch(alias):
        raise InvalidInput(
            f"invalid alias {_shown(alias)}",
            hint="aliases are 1-64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
        )
    if not removing and is_reserved_alias(alias):
        raise InvalidInput(f"alias {alias!r} is reserved",
                           hint="v<N>, 'none' and names ending in .lock (in any case) cannot be aliases")
    if settable and alias == LATEST:
        raise InvalidInput("alias 'latest' cannot be set or removed by hand", hint="it always points at the highest live version")
    return alias


@dataclass(frozen=True, order=True)
class CollectionId:
    entity: str
    project: str
    name: str

    @property
    def full(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}"

    def short(self, entity: str, project: str) -> str:
        """The shortest form that resolves back to this collection under the defaults."""
        if self.entity == entity and self.project == project:
            return self.name
        if self.entity == entity:
            return f"{self.project}/{self.name}"
        return self.full


@dataclass(frozen=True)
class Ref:
    collection: CollectionId
    selector: str | None = None  # None: latest, or the collection itself where a command says so

    @property
    def name(self) -> str:
        return self.collection.name

    @property
    def version_number(self) -> int | None:
        if self.selector is None:
            return None
        match = VERSION_RE.fullmatch(self.selector)
        return int(match.group(1)) if match else None


def parse_selector(selector: str) -> str:
    if VERSION_RE.fullmatch(selector):
        return selector
    if ALIAS_RE.fullmatch(selector) or DIGEST_PREFIX_RE.fullmatch(selector):
        return selector
    raise InvalidInput(f"invalid selector {_shown(selector)}", hint="use v<N>, an alias, or a digest prefix of 8-64 hex digits")


def parse_collection(text: str, entity: str, project: str) -> CollectionId:
    parts = text.split("/")
    if len(parts) == 1:
        ent, proj, name = entity, project, parts[0]
    elif len(parts) == 2:
        ent, (proj, name) = entity, parts
    elif len(parts) == 3:
        ent, proj, name = parts
    else:
        raise InvalidInput(f"invalid ref {_shown(text)}", hint="use [[entity/]project/]name[:selector]")
    return CollectionId(validate_name(ent, "entity"), validate_name(proj, "project"), validate_name(name))


def parse_ref(text: str, entity: str = DEFAULT_ENTITY, project: str = DEFAULT_PROJECT) -> Ref:
    """Parse `[[entity/]project/]name[:selector]`, filling omitted parts from the defaults."""
    if not isinstance(text, str) or not text:
        raise InvalidInput("empty ref", hint="use [[entity/]project/]name[:selector]")
    head, colon, selector = text.partition(":")
    if colon and not selector:
        raise InvalidInput(f"invalid ref {_shown(text)}: empty selector", hint="use name:v<N>, name:<alias> or name:<digest prefix>")
    collection = parse_collection(head, entity, project)
    return Ref(collection, parse_selector(selector) if colon else None)


def format_ref(collection: CollectionId, version: int | None, entity: str, project: str) -> str:
    """The shortest ref to a collection (or one of its versions) under the defaults."""
    name = collection.short(entity, project)
    return name if version is None else f"{name}:v{version}"
