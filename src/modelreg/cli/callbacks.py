"""The completion callbacks the app puts on its parameters.

`typer.Argument(..., autocompletion=callbacks.ref)`: each is tagged with the kind of
value it completes (read back by the table generator in `completers.py`) and gets its
candidates from `candidates.provide`, as the fast path in `complete.py` does.
"""

import typer

from . import candidates
from ._typer_private import completion_kind

TAG = "modelreg_kind"


def _root_value(ctx: typer.Context) -> str | None:
    root = ctx.find_root()
    found = {}
    for param in root.command.params:
        for opt in ("--root", "--remote"):
            if param.param_type_name == "option" and opt in param.opts:
                value = root.params.get(param.name)
                found[opt] = None if value is None else str(value)
    return candidates.root_of(found.get("--root"), found.get("--remote"))


def _ref_value(ctx: typer.Context) -> str | None:
    arguments = [p for p in ctx.command.params if p.param_type_name == "argument"]
    return candidates.ref_argument(
        [(kind_of(p), p.nargs, ctx.params.get(p.name)) for p in arguments], list(ctx.args)
    )


def _completer(kind: str, doc: str):
    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        return candidates.provide(kind, incomplete, root=_root_value(ctx), ref=_ref_value(ctx))

    complete.__name__ = complete.__qualname__ = kind.replace("-", "_")
    complete.__doc__ = doc
    setattr(complete, TAG, kind)  # read back by the table generator
    return complete


ref = _completer("ref", "Collection names; after `name:` its versions, aliases and latest.")
collection = _completer("collection", "Collection names, without selectors.")
registered = _completer("registered", "Registered-model names.")
alias = _completer("alias", "Aliases of the collection named by the REF argument.")
version_file = _completer("version-file", "Paths inside the version the REF argument names.")
config_key = _completer("config-key", "Configuration keys.")
remote = _completer("remote", "Names of the remotes in the user's config file.")
path = _completer("path", "Nothing: the shell completes file names.")


def kind_of(param) -> str | None:
    """The completion kind a parameter's callback was tagged with; "unknown" marks a
    callback without a tag, which the fast path leaves to Typer."""
    return completion_kind(param, TAG)
