"""The Typer side of tab completion.

Owns the completion callbacks the app puts on its parameters
(`typer.Argument(..., autocompletion=completers.ref)`), each tagged with the kind of
value it completes, and the generator that reads the app's command tree, tags
included, into `_cmdtable.py` for the fast path in `complete.py`.  Both paths get
their candidates from `complete.provide`, so they cannot disagree about registry
contents; `--check` and the tests keep the table in step with the app.
"""

import os
import pathlib
import sys

import typer

from . import complete as fast

TABLE_PATH = pathlib.Path(__file__).with_name("_cmdtable.py")
# The repository's completions/ (src/modelreg/cli → repository root).
SCRIPTS_DIR = pathlib.Path(__file__).resolve().parents[3] / "completions"


def _root_value(ctx: typer.Context) -> str | None:
    root = ctx.find_root()
    for param in root.command.params:
        if param.param_type_name == "option" and "--root" in param.opts:
            value = root.params.get(param.name)
            return None if value is None else str(value)
    return None


def _ref_value(ctx: typer.Context) -> str | None:
    arguments = [p for p in ctx.command.params if p.param_type_name == "argument"]
    return fast.ref_argument(
        [(kind_of(p), p.nargs, ctx.params.get(p.name)) for p in arguments], list(ctx.args)
    )


def _completer(kind: str, doc: str):
    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        return fast.provide(kind, incomplete, root=_root_value(ctx), ref=_ref_value(ctx))

    complete.__name__ = complete.__qualname__ = kind.replace("-", "_")
    complete.__doc__ = doc
    complete.modelreg_kind = kind  # read back by the table generator
    return complete


ref = _completer("ref", "Collection names; after `name:` its versions, aliases and latest.")
collection = _completer("collection", "Collection names, without selectors.")
registered = _completer("registered", "Registered-model names.")
alias = _completer("alias", "Aliases of the collection named by the REF argument.")
version_file = _completer("version-file", "Paths inside the version the REF argument names.")
config_key = _completer("config-key", "Configuration keys.")
path = _completer("path", "Nothing: the shell completes file names.")


def kind_of(param) -> str | None:
    """The completion kind a parameter's callback was tagged with.

    Typer keeps no public handle on the `autocompletion` callback: it wraps it
    (functools.update_wrapper, which copies our tag) in a closure stored as Click's
    `_custom_shell_complete`.  "unknown" marks a callback without a tag, which the
    fast path leaves to Typer.
    """
    wrapped = getattr(param, "_custom_shell_complete", None)
    if wrapped is None:
        return None
    cells = [cell.cell_contents for cell in wrapped.__closure__ or ()]
    for candidate in (wrapped, *cells):
        kind = getattr(candidate, "modelreg_kind", None)
        if kind:
            return kind
    return "unknown"


# --- Generating the command table --------------------------------------------------------


def build_table(app: typer.Typer | None = None) -> dict:
    """The command tree as `complete.py` replays it: every command, option, argument."""
    # Typer builds `--install-completion` differently when this is set.
    os.environ.pop("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", None)
    if app is None:
        from .app import app
    cli = typer.main.get_command(app)
    ctx = cli.make_context(fast.PROG, [], resilient_parsing=True)
    return _node(cli, ctx, help=None)


def _node(cmd, ctx, help) -> dict:
    node = {
        "name": ctx.info_name,
        "help": help,
        "hidden": bool(cmd.hidden),
        "interspersed": bool(ctx.allow_interspersed_args),
        "ignore_unknown": bool(ctx.ignore_unknown_options),
        "params": [_param(p, cmd, ctx) for p in cmd.get_params(ctx)],
    }
    if hasattr(cmd, "list_commands"):
        node["commands"] = []
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
            node["commands"].append(_node(sub, sub_ctx, _help(sub.get_short_help_str())))
    return node


def _param(param, cmd, ctx) -> dict:
    spec = _complete_spec(param, ctx)
    if param.param_type_name == "argument":
        return {"param": "argument", "name": param.name, "nargs": param.nargs, "complete": spec}
    opts = list(param.opts)
    if param is cmd.get_help_option(ctx):
        # Click builds these from a set: fix the order, or the table would churn.
        order = list(ctx.help_option_names)
        opts.sort(key=lambda o: order.index(o) if o in order else len(order))
    action = "append" if param.multiple else "count" if param.count else "store"
    if param.is_flag:
        action += "_const"
    return {
        "param": "option",
        "name": param.name,
        "opts": opts,
        "secondary": list(param.secondary_opts),
        "action": action,
        "nargs": param.nargs,
        "const": True if param.is_flag else None,
        "multiple": bool(param.multiple),
        "hidden": bool(param.hidden),
        "help": _help(param.help),
        "complete": spec,
    }


def _complete_spec(param, ctx) -> dict | None:
    """What TAB offers for a parameter: a registry kind, choices, or file names."""
    # Typer 0.28's own param types (pinned in pyproject; a sync test catches a change).
    from typer._click.types import File
    from typer._types import TyperChoice
    from typer.models import TyperPath

    kind = kind_of(param)
    if kind:
        return {"kind": kind}
    if isinstance(param.type, TyperChoice):
        return {
            "choices": [item.value for item in param.shell_complete(ctx, "")],
            "case_sensitive": bool(param.type.case_sensitive),
        }
    if isinstance(param.type, File):
        return {"kind": "file"}
    if isinstance(param.type, TyperPath):
        return {"kind": "dir" if param.type.dir_okay and not param.type.file_okay else "path"}
    return None


def _help(text: str | None) -> dict | None:
    """Help as Typer prints it for zsh and fish, rendered through Rich unwrapped;
    `complete.py` wraps it to the terminal's width at TAB time, as Rich would."""
    if not text:
        return None
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


def render_table(table: dict) -> str:
    return (
        '"""The command tree of the modelreg app, for completion without importing Typer.\n\n'
        "Generated by `python -m modelreg.cli.complete --generate`; do not edit.\n"
        '"""\n\n'
        f"TABLE = {_render_node(table, '')}\n"
    )


def _render_node(node: dict, indent: str) -> str:
    """One parameter per line, so that a change to the app shows as a small diff."""
    inner = indent + "    "
    lines = ["{"]
    for key, value in node.items():
        if key == "params":
            lines.append(f"{inner}'params': [")
            lines += [f"{inner}    {param!r}," for param in value]
            lines.append(f"{inner}],")
        elif key == "commands":
            lines.append(f"{inner}'commands': [")
            lines += [f"{inner}    {_render_node(sub, inner + '    ')}," for sub in value]
            lines.append(f"{inner}],")
        else:
            lines.append(f"{inner}{key!r}: {value!r},")
    lines.append(indent + "}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """`--generate` writes `_cmdtable.py`, `--check` fails when it or a committed
    script is stale, `--write-scripts` writes `completions/`."""
    if argv == ["--generate"]:
        TABLE_PATH.write_text(render_table(build_table()))
        return 0
    if argv == ["--write-scripts"]:
        SCRIPTS_DIR.mkdir(exist_ok=True)
        for shell, (name, _) in fast.SCRIPTS.items():
            (SCRIPTS_DIR / name).write_text(fast.script(shell))
        return 0
    if argv == ["--check"]:
        stale = [] if TABLE_PATH.read_text() == render_table(build_table()) else [TABLE_PATH]
        for shell, (name, _) in fast.SCRIPTS.items():
            target = SCRIPTS_DIR / name
            if not target.is_file() or target.read_text() != fast.script(shell):
                stale.append(target)
        for target in stale:
            print(f"stale: {target}", file=sys.stderr)
        return 1 if stale else 0
    print("usage: python -m modelreg.cli.complete --generate|--check|--write-scripts",
          file=sys.stderr)
    return 2
