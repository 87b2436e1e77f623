"""What TAB offers for each completion kind, shared by both completion paths.

Owns the candidates: `complete.py` (the fast path, standard library only) and the
Typer callbacks in `callbacks.py` both call `provide()`, so they cannot disagree about
registry contents. Standard library only, and it imports neither of them: the
dependency runs one way, from each path to here.
"""

from __future__ import annotations

import os

CONFIG_KEYS = (
    "defaults.entity",
    "defaults.project",
    "pull.mode",
    "aliases.protected",
    "gc.grace",
    "core.fsync",
)
KINDS = ("ref", "collection", "registered", "alias", "version-file", "config-key", "path", "remote")


def unpack_args(args: list[str], nargs_spec: list[int]) -> tuple[list, list[str]]:
    """Click's `_unpack_args`: positional values by nargs, one of which may be -1."""
    args, rv, star = list(args), [], None

    def fetch(seq: list):
        if not seq:
            return None
        return seq.pop(0) if star is None else seq.pop()

    spec = list(nargs_spec)
    while spec:
        nargs = fetch(spec)
        if nargs == 1:
            rv.append(fetch(args))
        elif nargs > 1:
            x = [fetch(args) for _ in range(nargs)]
            if star is not None:
                x.reverse()
            rv.append(tuple(x))
        elif nargs < 0:
            star = len(rv)
            rv.append(None)
    if star is not None:
        rv[star] = tuple(args)
        args = []
        rv[star + 1 :] = reversed(rv[star + 1 :])
    return rv, args


def ref_argument(arguments: list[tuple], leftover: list[str]) -> str | None:
    """The value of the first REF argument, from `(kind, nargs, value)` per argument.

    Click stops parsing at an option still waiting for its value, which is the one
    being completed in `pull REF --file <TAB>`: the positional args are then left
    over, unassigned, and are assigned here the way Click would have.
    """
    for i, (kind, _, value) in enumerate(arguments):
        if kind == "ref":
            if value is None and leftover:
                value = unpack_args(leftover, [nargs for _, nargs, _ in arguments])[0][i]
            return value if isinstance(value, str) else None
    return None


def _remotes(environ) -> dict:
    """name -> URL of the remotes in the user's config file, read with the standard library only."""
    import tomllib

    base = environ.get("XDG_CONFIG_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    try:
        with open(os.path.join(base, "modelreg", "config.toml"), "rb") as f:
            remotes = tomllib.load(f).get("remote", {})
    except (OSError, ValueError):
        return {}
    if not isinstance(remotes, dict):
        return {}
    return {n: t["url"] for n, t in remotes.items() if isinstance(t, dict) and isinstance(t.get("url"), str)}


def remote_names(environ=os.environ) -> list[str]:
    return sorted(_remotes(environ))


def root_of(root: str | None, remote: str | None, environ=os.environ) -> str | None:
    """The registry location the global options typed so far name: --root, or -r's URL."""
    if remote is not None:
        return _remotes(environ).get(remote, os.devnull)  # an unknown remote offers nothing
    return root


def provide(kind: str, incomplete: str, *, root=None, ref=None, environ=os.environ) -> list[str]:
    """Candidate values of a dynamic completion kind, shared by both completion paths.

    `root` is the global `--root` value typed, `ref` the REF argument already typed.
    Nothing on disk is written and errors give no candidates: TAB must never fail.
    """
    if kind == "config-key":
        return list(CONFIG_KEYS)  # the registry's; user keys (`--user`) are typed in full
    if kind == "path":
        return []
    if kind == "remote":
        return remote_names(environ)
    from ._complete_registry import RegistryView

    try:
        reg = RegistryView.find(root, environ)
        if reg is None:
            return []
        if kind in ("ref", "collection", "registered"):
            if ":" in incomplete:
                return reg.selectors(incomplete) if kind == "ref" else []
            return reg.names(incomplete, registered=kind == "registered")
        if kind == "alias":
            return reg.aliases(ref) if ref else []
        if kind == "version-file":
            return reg.files(ref) if ref else []
    except (OSError, ValueError, LookupError, TypeError, AttributeError):
        return []  # a damaged record (fsck names it) offers nothing, as its `ls` would
    raise ValueError(f"unknown completion kind {kind!r}")
