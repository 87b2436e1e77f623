"""The registry layout (SPEC §5, format 2), owned in one place: names, patterns, keys,
finding the registry, folding change records into a collection's state, and what a
live collection is.

Standard library only and no dataclasses: tab completion imports this on every TAB,
and the library builds on the same functions, so the two cannot disagree.

    config.toml                                format = 2
    objects/<2 hex>/<62 hex>                   blobs, named by BLAKE3
    names/<entity>/<project>/<folded>.json     the create-only claim of a collection name
    collections/<entity>/<project>/<name>/
        changes/<12 digits>.json               change records, create-only, in sequence
        manifests/<64 hex>.json                manifests and link records, named by BLAKE3
        snapshot.json                          the state after some record (a cache)
    tmp/  locks/                               filesystem only: in-flight writes, gc/writers

`man 5 modelreg-format` describes every file, who writes it and what a reader may assume.
"""

from __future__ import annotations

import json
import os
import re

REGISTRY_DIR = ".modelreg"
FORMAT = 2
CONFIG = "config.toml"

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
ALIAS_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
VERSION_PATTERN = r"v([0-9]+)"
DIGEST_PREFIX_PATTERN = r"[0-9a-f]{8,64}"
HEX64_PATTERN = r"[0-9a-f]{64}"
NAME_RE = re.compile(NAME_PATTERN)
ALIAS_RE = re.compile(ALIAS_PATTERN)
VERSION_RE = re.compile(VERSION_PATTERN)
DIGEST_PREFIX_RE = re.compile(DIGEST_PREFIX_PATTERN)
HEX64_RE = re.compile(HEX64_PATTERN)
LATEST = "latest"
KINDS = ("artifact", "registered")

# Filesystem only. 0.1.0's `locks/gc.lock` is held for good by `upgrade` to keep 0.1.0 from
# writing, so format 2's gc takes a lock of its own name.
GC_LOCK = "locks/gc-2.lock"
GC_LOCK_FORMAT1 = "locks/gc.lock"

# Format 1 (0.1.0), read until `modelreg upgrade`: collections/<e>/<p>/<name>/ holds
# collection.json, versions/v<N>.json (manifest, link record or tombstone), aliases/<alias>
# holding "v<N>\n", history.jsonl.
VERSION_FILE_RE = re.compile(VERSION_PATTERN + r"\.json")
ALIAS_LINE_RE = re.compile(VERSION_PATTERN + r"\n?")

SEQ_DIGITS = 12
CHANGE_RE = re.compile(r"([0-9]{%d})\.json" % SEQ_DIGITS)
_FORMAT_LINE = re.compile(rb"^format\s*=\s*([0-9]+)\s*$", re.M)


# -- keys ------------------------------------------------------------------------------


def blob_key(digest: str) -> str:
    return f"objects/{digest[:2]}/{digest[2:]}"


def claim_key(entity: str, project: str, name: str) -> str:
    """Where the claim of a name lives: folded, so `Foo` and `foo` contend for one key."""
    return f"names/{entity}/{project}/{name.casefold()}.json"


def collection_prefix(entity: str, project: str, name: str) -> str:
    return f"collections/{entity}/{project}/{name}/"


def changes_prefix(prefix: str) -> str:
    return prefix + "changes/"


def change_key(prefix: str, seq: int) -> str:
    return f"{prefix}changes/{seq:0{SEQ_DIGITS}d}.json"


def change_seq(key: str) -> int | None:
    match = CHANGE_RE.fullmatch(key.rpartition("/")[2])
    return int(match.group(1)) if match else None


def manifest_key(prefix: str, digest: str) -> str:
    return f"{prefix}manifests/{digest}.json"


def snapshot_key(prefix: str) -> str:
    return prefix + "snapshot.json"


# -- finding the registry --------------------------------------------------------------


def is_registry(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG)) and os.path.isdir(os.path.join(path, "objects"))


def registry_dir(path: str) -> str:
    """`path` names the registry itself (a `.modelreg` directory, or any directory holding
    config.toml and objects/) or the directory that holds `.modelreg`."""
    if os.path.basename(path) == REGISTRY_DIR or is_registry(path):
        return path
    return os.path.join(path, REGISTRY_DIR)


def explicit_root(root, environ) -> str | None:
    """--root, else MODELREG_DIR, as an absolute path with `~` expanded (a quoted
    `MODELREG_DIR='~/reg'` reaches us unexpanded; both the CLI and TAB expand it)."""
    chosen = root if root is not None else environ.get("MODELREG_DIR") or None
    if chosen is None:
        return None
    return os.path.abspath(os.path.expanduser(os.fspath(chosen)))


def find_registry(root=None, environ=os.environ, cwd: str | None = None) -> str | None:
    """The registry to use, or None: --root, else MODELREG_DIR, else the nearest
    `.modelreg` walking up from the working directory."""
    explicit = explicit_root(root, environ)
    if explicit is not None:
        found = registry_dir(explicit)
        return found if os.path.isdir(found) else None
    here = os.path.abspath(cwd or os.getcwd())
    while True:
        candidate = os.path.join(here, REGISTRY_DIR)
        if os.path.isdir(candidate):
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def config_format(data: bytes) -> int:
    """The `format` of a config.toml's bytes without parsing TOML (1 when absent)."""
    match = _FORMAT_LINE.search(data)
    return int(match.group(1)) if match else 1


# -- a collection's state --------------------------------------------------------------
#
# A state is a plain dict, built by folding change records in sequence:
#   seq       the last record applied (-1: none)
#   next      the number the next version or link gets (one more than any given)
#   versions  number -> summary (dict); a deleted one carries "deleted": True
#   aliases   alias -> number (the complete map after the last record)
#   marks     number -> [registered-model full names]: "linked into" records (artifacts)
#   created   time of the first record; updated: time of the last
#   emptied   True after `rm --all` until a version is made again


def empty_state() -> dict:
    return {"seq": -1, "next": 0, "versions": {}, "aliases": {}, "marks": {}, "created": "", "updated": "",
            "emptied": False}


def fold(state: dict, record: dict) -> dict:
    """Apply one change record to a state (in place) and return it."""
    state["seq"] = record["seq"]
    for number, summary in record.get("add", {}).items():
        state["versions"][int(number)] = dict(summary)
    for number in record.get("delete", ()):
        summary = state["versions"].get(number)
        if summary is not None:
            state["versions"][number] = {**summary, "deleted": True, "deleted_at": record.get("time", "")}
    for mark in record.get("marks", ()):
        targets = state["marks"].setdefault(mark["version"], [])
        if mark["link"] not in targets:
            targets.append(mark["link"])
    for mark in record.get("unmarks", ()):
        targets = state["marks"].get(mark["version"], [])
        if mark["link"] in targets:
            targets.remove(mark["link"])
            if not targets:
                del state["marks"][mark["version"]]
    state["aliases"] = dict(record.get("aliases", state["aliases"]))
    state["next"] = max(state["next"], record.get("next", 0))
    if not state["created"]:
        state["created"] = record.get("time", "")
    state["updated"] = record.get("time", state["updated"])
    events = [e.get("event") for e in record.get("events", ())]
    if record.get("add"):
        state["emptied"] = False
    if "collection-deleted" in events:
        state["emptied"] = True
    return state


def state_from_snapshot(data: dict) -> dict:
    state = empty_state()
    state.update({k: data[k] for k in ("seq", "next", "aliases", "created", "updated", "emptied") if k in data})
    state["versions"] = {int(k): v for k, v in data.get("versions", {}).items()}
    state["marks"] = {int(k): list(v) for k, v in data.get("marks", {}).items()}
    return state


def snapshot_of(state: dict, claim: dict | None = None) -> dict:
    """The snapshot of `state`; with the collection's `claim` (name, kind, created), so
    that a reader that needs both makes one request, not two (`ls NAME` on S3)."""
    doc = {"format": FORMAT, "seq": state["seq"], "next": state["next"],
           "versions": {str(k): v for k, v in sorted(state["versions"].items())},
           "aliases": dict(sorted(state["aliases"].items())),
           "marks": {str(k): v for k, v in sorted(state["marks"].items())}}
    if claim is not None:
        doc["claim"] = {k: claim[k] for k in ("name", "kind", "created") if k in claim}
    doc.update(created=state["created"], updated=state["updated"], emptied=state["emptied"])
    return doc


def live_numbers(state: dict) -> list[int]:
    return sorted(n for n, s in state["versions"].items() if not s.get("deleted"))


def is_live_collection(state: dict) -> bool:
    """What `ls` lists and TAB offers: a collection that has held a version and was not
    emptied by `rm --all` (one whose last version was deleted singly stays, with 0). A
    local reader marks a state whose records it could not all read `unreadable`: `ls`
    leaves such a collection out with a warning."""
    return bool(state["versions"]) and not state["emptied"] and not state.get("unreadable")


# -- reading a local registry without the library (for TAB) ----------------------------


def open_regular(path: str):
    """A binary file object for a regular file (symlinks followed), else None, as the
    library reads: a FIFO would block TAB forever and a device never ends. The stat
    before the open keeps a device from being opened; O_NONBLOCK and the fstat after it
    cover a swap in between."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    f = os.fdopen(fd, "rb")
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        regular = False
    if not regular:
        f.close()
        return None
    return f


def read_regular(path: str) -> bytes | None:
    """The bytes of a regular file, or None (missing, unreadable or not a regular file)."""
    f = open_regular(path)
    if f is None:
        return None
    try:
        with f:
            return f.read()
    except OSError:
        return None


def _load(path: str):
    data = read_regular(path)
    try:
        return None if data is None else json.loads(data)
    except (ValueError, RecursionError):
        return None


def local_claims(root: str, entity: str, project: str, start: str = "") -> list[dict]:
    """The claims of one project of a local registry: [{"name", "kind"}]; with `start`,
    only names that may begin with it (file names are folded: the test is on the folded
    form, so TAB reads only the claims it may offer)."""
    base = os.path.join(root, "names", entity, project)
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    folded = start.casefold()
    found = []
    for file in names:
        if folded and not file.startswith(folded):
            continue
        doc = _load(os.path.join(base, file))
        if isinstance(doc, dict) and isinstance(doc.get("name"), str) and NAME_RE.fullmatch(doc["name"]) \
                and doc.get("kind") in KINDS and file == doc["name"].casefold() + ".json":
            found.append(doc)
    return found


def local_state(root: str, entity: str, project: str, name: str) -> dict:
    """A collection's state read from a local registry: its snapshot, then the records after it."""
    prefix = os.path.join(root, collection_prefix(entity, project, name))
    state = empty_state()
    snap = _load(os.path.join(prefix, "snapshot.json"))
    if isinstance(snap, dict):
        try:
            state = state_from_snapshot(snap)
        except (TypeError, ValueError, AttributeError):
            state = empty_state()
    return _fold_local(prefix, state)


# What `snapshot_of` writes (compact, in its key order) begins and ends like this.
_SNAPSHOT_HEAD = re.compile(rb'\{"format":%d,"seq":(-1|[0-9]+),"next":[0-9]+,"versions":\{(\}?)' % FORMAT)
_SNAPSHOT_TAIL = re.compile(rb',"emptied":(true|false)\}\n?\Z')


def local_is_live(root: str, entity: str, project: str, name: str) -> bool:
    """`is_live_collection(local_state(...))` without parsing the snapshot's versions: TAB
    asks this of every name it may offer, and a snapshot of 10,000 versions takes longer
    to parse than Python takes to start. Only the snapshot's head (is `versions` empty?)
    and tail (`emptied`) are read; a snapshot of any other shape is read whole."""
    prefix = os.path.join(root, collection_prefix(entity, project, name))
    head = tail = b""
    f = open_regular(os.path.join(prefix, "snapshot.json"))
    if f is not None:
        try:
            with f:
                head = f.read(256)
                size = os.fstat(f.fileno()).st_size
                if size > len(head):
                    f.seek(size - 64)
                tail = f.read() if size > len(head) else head
        except OSError:
            head = tail = b""
    start, end = _SNAPSHOT_HEAD.match(head), _SNAPSHOT_TAIL.search(tail)
    if not (start and end):
        return is_live_collection(local_state(root, entity, project, name))
    state = empty_state()
    state["seq"], state["emptied"] = int(start.group(1)), end.group(1) == b"true"
    state = _fold_local(prefix, state)
    return (start.group(2) == b"" or bool(state["versions"])) and not state["emptied"] \
        and not state.get("unreadable")


def _fold_local(prefix: str, state: dict) -> dict:
    """Fold the records after `state['seq']` into it; at one that is missing or cannot be
    read, stop and mark the state `unreadable` (the library refuses such a collection)."""
    try:
        names = sorted(os.listdir(os.path.join(prefix, "changes")))
    except OSError:
        return state
    for file in names:
        match = CHANGE_RE.fullmatch(file)
        if not match or int(match.group(1)) <= state["seq"]:
            continue
        seq = int(match.group(1))
        record = _load(os.path.join(prefix, "changes", file)) if seq == state["seq"] + 1 else None
        try:
            if not isinstance(record, dict) or record.get("seq") != seq:
                raise ValueError(file)
            fold(state, record)
        except (TypeError, ValueError, KeyError, AttributeError):
            state["unreadable"] = True
            break
    return state
