"""`ls NAME --sort FIELD --where metadata.KEY=VALUE` over version rows (SPEC §3 `ls`)."""

from __future__ import annotations

import json

from .arguments import parse_metadata_value
from .errors import InvalidInput
from .records import VersionInfo


def _field_value(row: VersionInfo, field: str):
    if field.startswith("metadata."):
        return row.metadata.get(field[len("metadata."):], _MISSING)
    return getattr(row, field)


_MISSING = object()


SORT_FIELDS = ("version", "created", "size")


def sort_rows(rows: list[VersionInfo], sort: str | None) -> list[VersionInfo]:
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


def filter_rows(rows: list[VersionInfo], where) -> list[VersionInfo]:
    for clause in where:
        field, eq, text = clause.partition("=")
        if not eq or not field.startswith("metadata.") or len(field) <= len("metadata."):
            raise InvalidInput(f"invalid filter {clause!r}", hint="use --where metadata.KEY=VALUE")
        wanted = parse_metadata_value(text)  # exactly as `-m KEY=VALUE` stored it
        key = field[len("metadata."):]
        rows = [r for r in rows if key in r.metadata and _matches(r.metadata[key], wanted)]
    return rows
