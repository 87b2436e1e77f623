"""Every use of Typer's (and its vendored Click's) private API, in one place.

Checked against Typer 0.28.0 (pyproject pins `typer>=0.28,<0.29`); the attributes read
here were also present in 0.29.1. Since Typer 0.26 Click lives inside Typer as the
private `typer._click`, so nothing of Click is public any more. When Typer moves,
only this module should need to follow; `tests/test_output_contract.py` fails on a
private name used anywhere else under `src/`. Typer itself is imported inside the
functions: the completion fast path and `--help` must not pay for it.

Why each is needed:

- `click_exceptions()`: `entry.run` runs the app with `standalone_mode=False` to map
  every error to SPEC §4's one line and exit code; that needs Click's exception types
  (`NoArgsIsHelpError`, `UsageError`, `ClickException`), which Typer re-exports only
  partly.
- `is_click_stdout_wrapper()`: Click wraps stdout in `PacifyFlushWrapper` and exits 1
  after a closed pipe in its own output (`--help | head -1`); SPEC §4 wants exit 0.
- `raised_in_click_echo()`: tells an OSError from Click writing `--help` (a full disk)
  from a bug, by the module the error was raised in.
- `completion_kind()`: Typer keeps no public handle on an `autocompletion` callback;
  it wraps it in a closure stored as Click's `_custom_shell_complete`, where the
  completion table generator finds our tag.
- `param_type_kind()`: Typer's own parameter types (`TyperChoice`, Click's `File`,
  `TyperPath`) tell the table what TAB offers for a parameter without a callback.
- `param_choices()`: Typer 0.29 parameters describe their type with
  `type_descriptor`; 0.28 and plain Click carry a `type` such as Choice.
- `shell_help()`: the help text Typer's zsh and fish completion classes print, with
  `rich_utils.MAX_WIDTH` raised so that it comes out unwrapped.
"""

from __future__ import annotations

import enum


def click_exceptions():
    """Click's exception module (`NoArgsIsHelpError`, `UsageError`, `ClickException`)."""
    from typer._click import exceptions

    return exceptions


def is_click_stdout_wrapper(stream) -> bool:
    from typer._click.utils import PacifyFlushWrapper

    return isinstance(stream, PacifyFlushWrapper)


def raised_in_click_echo(exc: BaseException) -> bool:
    """Whether the error comes from Click writing its own output (help text) to stdout."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name == "echo" \
        and tb.tb_frame.f_globals.get("__name__", "").endswith("_click.utils")


def completion_kind(param, tag: str) -> str | None:
    """The value of attribute `tag` on the parameter's `autocompletion` callback:
    None without a callback, "unknown" for a callback without the tag.

    Typer wraps the callback (functools.update_wrapper, which copies the tag) in a
    closure stored as Click's `_custom_shell_complete`.
    """
    wrapped = getattr(param, "_custom_shell_complete", None)
    if wrapped is None:
        return None
    cells = [cell.cell_contents for cell in wrapped.__closure__ or ()]
    for candidate in (wrapped, *cells):
        kind = getattr(candidate, tag, None)
        if kind:
            return kind
    return "unknown"


def param_type_kind(param) -> str | None:
    """"choice", "file", "dir", "path" or None, from Typer's own parameter types."""
    from typer._click.types import File
    from typer._types import TyperChoice
    from typer.models import TyperPath

    if isinstance(param.type, TyperChoice):
        return "choice"
    if isinstance(param.type, File):
        return "file"
    if isinstance(param.type, TyperPath):
        return "dir" if param.type.dir_okay and not param.type.file_okay else "path"
    return None


def param_choices(param) -> list[str] | None:
    """A parameter's choices as strings, or None."""
    descriptor = getattr(param, "type_descriptor", None)
    found = descriptor.choices if descriptor is not None else None
    if found is None:
        found = getattr(getattr(param, "type", None), "choices", None)
    if not found:
        return None
    return [str(c.value) if isinstance(c, enum.Enum) else str(c) for c in found]


def shell_help(text: str) -> dict:
    """`{"zsh": ..., "fish": ...}`: help as Typer prints it for each shell, unwrapped."""
    from typer import _completion_classes as shells
    from typer import rich_utils
    from typer._click.shell_completion import CompletionItem

    item = CompletionItem("x", help=text)
    saved, rich_utils.MAX_WIDTH = rich_utils.MAX_WIDTH, 1_000_000
    try:
        zsh = shells.ZshComplete.format_completion(None, item)
        fish = shells.FishComplete.format_completion(None, item)
    finally:
        rich_utils.MAX_WIDTH = saved
    return {"zsh": zsh[len('"x":"') : -1], "fish": fish[len("x\t") :]}

