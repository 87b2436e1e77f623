"""The CLI's syntax for metadata: `-m KEY=VALUE` and `--meta-file FILE` (SPEC §3 `log`)."""

from __future__ import annotations

import json
import os

from ..arguments import METADATA_MAX_DEPTH, check_metadata, parse_metadata_value, path_arg, str_list
from ..errors import InvalidInput, NotFound

META_FILE_MAX_BYTES = 16 << 20  # a --meta-file larger than this is refused unread


def parse_metadata_items(items: list[str]) -> dict:
    result = {}
    for item in str_list(items, "metadata items", one=False):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InvalidInput(f"invalid metadata {item!r}", hint="use -m KEY=VALUE")
        result[key.strip()] = parse_metadata_value(value)
    return check_metadata(result)


def load_meta_file(path: str | os.PathLike) -> dict:
    """A --meta-file: a UTF-8 JSON object. Missing is exit 3; anything else wrong, exit 2."""
    from ..scan import shown_path

    path = path_arg(path, "metadata file")
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
