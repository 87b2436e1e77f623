"""Checking what the API is given, before anything is written (SPEC §3, §6).

Wrong types are `InvalidInput` (exit 2), never a TypeError from deep inside; metadata is
bounded (documented in modelreg-log(1)); `log`'s paths, name and aliases are checked and
scanned. The CLI runs the same checks before a first `log` creates a registry, so that
refused input leaves nothing behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import Conflict, InvalidInput
from .refs import DEFAULT_ENTITY, DEFAULT_PROJECT, LATEST, parse_collection, validate_alias
from .scan import basename, scan

# Documented limits (modelreg-log(1)). Metadata is read with every `ls NAME` and kept in
# each collection's records; a bound keeps every reader fast and within Python's recursion limit.
METADATA_MAX_DEPTH = 32  # levels of objects and lists, the top-level object included


METADATA_MAX_BYTES = 1 << 20  # as compact UTF-8 JSON, as it is stored


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


def check_log_options(metadata, description, run, inputs, force, reason, on_progress=None) -> tuple[dict, list[str]]:
    """Check `log`'s other arguments, before anything is scanned or written: (metadata, inputs).

    The CLI also runs it before a first `log` creates a registry.
    """
    metadata = check_metadata({} if metadata is None else metadata)
    str_arg(description, "description", optional=True, stored=True)
    str_arg(run, "run", optional=True, stored=True)
    bool_arg(force, "force")
    str_arg(reason, "reason", optional=True, stored=True)
    callable_arg(on_progress, "on_progress")
    return metadata, str_list(inputs, "inputs")


def prepare_log(paths, name: str | None, aliases, exclude, notify=None):
    """Check what `log` was given, before anything is written: (name, aliases, files).

    The CLI also runs it before a first `log` creates a registry, so that refused input
    leaves no registry behind.
    """
    paths = [path_arg(p, "a path to log") for p in items_arg(paths, "paths", one=True)]
    name = str_arg(name, "name", optional=True)
    exclude = str_list(exclude, "exclude", one=False)
    if len(paths) > 1 and not name:
        raise InvalidInput("several paths need a name", hint="add -n NAME")
    if name is None:
        if not paths:
            raise InvalidInput("nothing to log")
        name = basename(Path(paths[0]))
    if ":" in name:
        raise InvalidInput(f"invalid name {name!r}: a name for log takes no selector")
    parse_collection(name, DEFAULT_ENTITY, DEFAULT_PROJECT)
    return name, alias_list(aliases), scan(paths, exclude, notify)


def unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def str_arg(value, what: str, *, optional: bool = False, stored: bool = False):
    """A string argument; `stored` ones are written into JSON and must be valid UTF-8."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {_type_name(value)}")
    return _utf8(value, what) if stored else value


def bool_arg(value, what: str, *, optional: bool = False):
    """True or False only: `force="no"` would otherwise count as yes."""
    if value is None and optional:
        return None
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be True or False, not {_type_name(value)}")
    return value


def callable_arg(value, what: str):
    if value is not None and not callable(value):
        raise InvalidInput(f"{what} must be callable, not {_type_name(value)}")
    return value


def path_arg(value, what: str) -> str:
    """A str or os.PathLike path. Bytes are refused: names are stored as UTF-8 text."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a str or os.PathLike path, not {_type_name(value)}")
    if not value:
        raise InvalidInput(f"{what} is empty")  # Path("") would quietly mean the current directory
    return value


def items_arg(items, what: str, *, one: bool) -> list:
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


def str_list(items, what: str, *, one: bool = True) -> list[str]:
    result = items_arg(items, what, one=one)
    for item in result:
        if not isinstance(item, str):
            raise InvalidInput(f"{what} must be strings, not {_type_name(item)}")
    return result


def utf8_safe(value):
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
        return {utf8_safe(k): utf8_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [utf8_safe(v) for v in value]
    return value


def check_change(ref, force, reason) -> None:
    """The arguments every changing command shares."""
    str_arg(ref, "ref")
    bool_arg(force, "force")
    str_arg(reason, "reason", optional=True, stored=True)


def listed(items, what: str = "aliases") -> list[str]:
    """One string is one item (`aliases="best"`), not a sequence of one-letter aliases."""
    return str_list(items, what)


def alias_list(items) -> list[str]:
    """Aliases to set, validated and deduplicated; checked before anything is written.

    Two of them differing only by case, or one differing from the computed `latest`
    only by case, would be aliases of one collection that differ only by case (exit 4).
    """
    aliases = unique([validate_alias(a) for a in listed(items)])
    seen = {LATEST: LATEST}
    for alias in aliases:
        other = seen.setdefault(alias.casefold(), alias)
        if other != alias:
            raise Conflict(f"aliases {other!r} and {alias!r} differ only by case",
                           hint="aliases of one collection may not differ only by case")
    return aliases
