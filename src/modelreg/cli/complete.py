"""Tab completion served by the standard library alone.

Owns the answer to a `_MODELREG_COMPLETE` request: it replays, over the generated
command table `_cmdtable.py`, the steps Typer takes to find what is being completed
(Click's resilient parse, then `_resolve_context` and `_resolve_incomplete`), prints
the result in the per-shell format Typer's scripts expect, and reads registry
contents straight from the on-disk format (SPEC §5).  Typer, Rich and the registry
library are never imported here: TAB must cost little more than starting Python.

Candidates come from `candidates.provide()`, which the Typer-side callbacks
(`callbacks.py`) call too, so both paths give the same answers;
`python -m modelreg.cli.complete --generate|--check|--write-scripts` regenerates the
table and the shell scripts from the app (`completers.py`).
"""

from __future__ import annotations

import os
import sys

# Re-exported: the fast path's public names, as before the candidates and scripts moved out.
from .candidates import CONFIG_KEYS, KINDS, provide, ref_argument, root_of  # noqa: F401
from .candidates import unpack_args as _unpack_args
from .shellscripts import COMPLETE_VAR, PROG, SCRIPTS, script  # noqa: F401
# Set by our own bash script: answer in Click 8's "type,value" lines so the script can
# fall back to file names only where a path is expected.
TYPED_VAR = "_MODELREG_COMPLETE_TYPED"
# Lets tests (and a user chasing a bug) get Typer's own answer from the entry point.
VIA_TYPER_VAR = "MODELREG_COMPLETE_VIA_TYPER"


class _Unanswerable(Exception):
    """The table cannot answer this request; Typer will."""


def serve(environ=os.environ, argv=sys.argv) -> int | None:
    """Answer a completion request; None when there is none to answer here.

    `argv` is accepted for the entry point's convenience: like Typer, completion reads
    only the environment.  None is also returned for requests the table cannot answer
    (another shell, an unknown completer, an unexpected error), so that the entry point
    goes on to Typer, which answers them correctly, only slower.
    """
    instruction = environ.get(COMPLETE_VAR)
    if not instruction or environ.get(VIA_TYPER_VAR):
        return None
    action, _, shell = instruction.partition("_")
    if action == "source" and shell in SCRIPTS:
        sys.stdout.write(script(shell))
        return 0
    if action != "complete" or shell not in ("bash", "zsh", "fish"):
        return None
    try:
        text, code = answer(shell, environ)
    except Exception:
        if environ.get("MODELREG_DEBUG") == "1":
            raise
        return None
    sys.stdout.write(text)
    sys.stdout.flush()
    return code


def answer(shell: str, environ) -> tuple[str, int]:
    """The text a completion request prints and its exit code."""
    if shell == "bash":
        cwords = _split(environ["COMP_WORDS"])
        cword = int(environ["COMP_CWORD"])
        args = cwords[1:cword]
        incomplete = cwords[cword] if cword < len(cwords) else ""
    else:
        line = environ.get("_TYPER_COMPLETE_ARGS", "")
        args = _split(line)[1:]
        incomplete = args.pop() if args and not line.endswith(" ") else ""
    items, fallback = completions(args, incomplete, environ)
    if shell == "bash":
        if environ.get(TYPED_VAR):
            lines = [f"{typ},{value}" for value, _, typ in items]
            if not items and fallback:
                lines = [f"{fallback},"]
            return "\n".join(lines) + "\n", 0
        return "\n".join(value for value, _, _ in items) + "\n", 0
    if shell == "zsh":
        if not items:
            return "_files\n", 0
        width = _help_width(environ)
        specs = "\n".join(
            f'"{_zsh_escape(value)}":"{_wrap(help["zsh"], width)}"'
            if help
            else f'"{_zsh_escape(value)}"'
            for value, help, _ in items
        )
        return f"_arguments '*: :(({specs}))'\n", 0
    action = environ.get("_TYPER_COMPLETE_FISH_ACTION", "")
    if action == "is-args":
        # Typer exits before printing: 0 turns file completion off, 1 leaves it on.
        return "", 0 if items else 1
    if action == "get-args" and items:
        width = _help_width(environ)
        return "\n".join(
            f"{value}\t{_wrap(help['fish'], width)}" if help else value
            for value, help, _ in items
        ) + "\n", 0
    return "\n", 0


# --- Click's resolution, replayed over the table --------------------------------------


class _Ctx:
    """What completion needs of a Click context: the values given on the command line,
    the args left over, and the option prefixes seen so far."""

    def __init__(self, node: dict, args: list[str], parent: _Ctx | None = None):
        self.node = node
        self.parent = parent
        self.values, self.rest, prefixes = _parse(node, args)
        self.prefixes = (parent.prefixes if parent else set()) | prefixes


def completions(args: list[str], incomplete: str, environ) -> tuple[list, str | None]:
    """Items `(value, help, type)` for the incomplete word, and the kind of file
    completion the shell should fall back to when there are none."""
    from ._cmdtable import TABLE

    ctx = _resolve_context(TABLE, args)
    obj, incomplete = _resolve_incomplete(ctx, list(args), incomplete)
    if obj is None:
        return _command_items(ctx, incomplete), None
    spec = obj.get("complete") or {}
    kind = spec.get("kind")
    if "choices" in spec:
        if spec["case_sensitive"]:
            return [(c, None, "plain") for c in spec["choices"] if c.startswith(incomplete)], None
        low = incomplete.lower()
        return [(c, None, "plain") for c in spec["choices"] if c.lower().startswith(low)], None
    if kind == "file":
        return [(incomplete, None, "file")], None
    if kind in ("path", "dir"):
        return [], "dir" if kind == "dir" else "file"
    if kind is None:
        return [], None
    if kind not in KINDS:
        raise _Unanswerable(kind)
    found = provide(kind, incomplete, root=_root_value(ctx), ref=_ref_value(ctx), environ=environ)
    return [(v, None, "plain") for v in found if v.startswith(incomplete)], None


def _resolve_context(table: dict, args: list[str]) -> _Ctx:
    """Click's `_resolve_context`: descend through the subcommands named in args."""
    ctx = _Ctx(table, args)
    while ctx.rest and "commands" in ctx.node:
        name, rest = ctx.rest[0], ctx.rest[1:]
        sub = next((c for c in ctx.node["commands"] if c["name"] == name), None)
        if sub is None:
            break
        ctx = _Ctx(sub, rest, ctx)
    return ctx


class _Usage(Exception):
    """A usage error, which Click's resilient parsing swallows where it occurs."""


def _parse(node: dict, args: list[str]) -> tuple[dict, list[str], set[str]]:
    """Click's `_OptionParser.parse_args` with `resilient_parsing`: the values given on
    the command line (None or absent: not given), the leftover args, the prefixes."""
    longs, shorts, prefixes = {}, {}, {"-", "--"}
    for p in node["params"]:
        if p["param"] != "option":
            continue
        for names, const in ((p["opts"], p["const"]), (p["secondary"], False)):
            for opt in names:
                pre, rest = _split_opt(opt)
                prefixes.add(pre[0])
                if len(pre) == 1 and len(rest) == 1:
                    shorts[opt] = (p, const)
                else:
                    prefixes.add(pre)
                    longs[opt] = (p, const)
    values: dict = {}
    largs: list[str] = []
    rargs = list(args)

    def take(opt: str, p: dict):
        if len(rargs) < p["nargs"]:
            raise _Usage(opt)
        if p["nargs"] == 1:
            return rargs.pop(0)
        value = tuple(rargs[: p["nargs"]])
        del rargs[: p["nargs"]]
        return value

    def process(p: dict, const, value) -> None:
        action, name = p["action"], p["name"]
        if action == "store":
            values[name] = value
        elif action == "store_const":
            values[name] = const
        elif action == "append":
            values.setdefault(name, []).append(value)
        elif action == "append_const":
            values.setdefault(name, []).append(const)
        elif action == "count":
            values[name] = (values.get(name) or 0) + 1
        else:
            raise _Unanswerable(action)

    def match_long(opt: str, explicit: str | None) -> None:
        if opt not in longs:
            raise KeyError(opt)
        p, const = longs[opt]
        if p["action"] in ("store", "append"):
            if explicit is not None:
                rargs.insert(0, explicit)
            process(p, const, take(opt, p))
        elif explicit is not None:
            raise _Usage(opt)
        else:
            process(p, const, None)

    def match_short(arg: str) -> None:
        prefix, unknown = arg[0], []
        for i, ch in enumerate(arg[1:], start=2):
            found = shorts.get(prefix + ch)
            if not found:
                if node["ignore_unknown"]:
                    unknown.append(ch)
                    continue
                raise _Usage(prefix + ch)
            p, const = found
            if p["action"] in ("store", "append"):
                stop = i < len(arg)
                if stop:
                    rargs.insert(0, arg[i:])
                process(p, const, take(prefix + ch, p))
                if stop:
                    break
            else:
                process(p, const, None)
        if node["ignore_unknown"] and unknown:
            largs.append(prefix + "".join(unknown))

    arguments = [p for p in node["params"] if p["param"] == "argument"]
    try:
        while rargs:
            arg = rargs.pop(0)
            if arg == "--":
                break
            if arg[:1] in prefixes and len(arg) > 1:
                opt, eq, explicit = arg.partition("=")
                try:
                    match_long(opt, explicit if eq else None)
                except KeyError:
                    if arg[:2] not in prefixes:
                        match_short(arg)
                    elif node["ignore_unknown"]:
                        largs.append(arg)
                    else:
                        raise _Usage(arg) from None
            elif node["interspersed"]:
                largs.append(arg)
            else:
                rargs.insert(0, arg)
                break
        pargs, rest = _unpack_args(largs + rargs, [a["nargs"] for a in arguments])
        for a, value in zip(arguments, pargs):
            if a["nargs"] > 1:
                holes = sum(1 for x in value if x is None)
                if holes == len(value):
                    value = None
                elif holes:
                    raise _Usage(a["name"])
            if a["nargs"] == -1 and value == ():
                value = None
            values[a["name"]] = value
        largs = rest
    except _Usage:
        pass
    return values, largs, prefixes


def _split_opt(opt: str) -> tuple[str, str]:
    first = opt[:1]
    if first.isalnum():
        return "", opt
    if opt[1:2] == first:
        return opt[:2], opt[2:]
    return first, opt[1:]


def _start_of_option(ctx: _Ctx, value: str) -> bool:
    return bool(value) and value[0] in ctx.prefixes


def _resolve_incomplete(ctx: _Ctx, args: list[str], incomplete: str) -> tuple[dict | None, str]:
    """Click's `_resolve_incomplete`: the parameter to complete, None for the command."""
    if incomplete == "=":
        incomplete = ""
    elif "=" in incomplete and _start_of_option(ctx, incomplete):
        name, _, incomplete = incomplete.partition("=")
        args.append(name)
    if "--" not in args and _start_of_option(ctx, incomplete):
        return None, incomplete
    params = ctx.node["params"]
    for p in params:
        if p["param"] == "option" and p["action"] in ("store", "append"):
            for index, arg in enumerate(reversed(args)):
                if index + 1 > p["nargs"]:
                    break
                if _start_of_option(ctx, arg):
                    if arg in p["opts"]:
                        return p, incomplete
                    break
    for p in params:
        if p["param"] == "argument":
            if p["nargs"] == -1 or ctx.values.get(p["name"]) is None:
                return p, incomplete
    return None, incomplete


def _command_items(ctx: _Ctx, incomplete: str) -> list:
    items = [
        (sub["name"], sub["help"], "plain")
        for sub in ctx.node.get("commands", ())
        if sub["name"].startswith(incomplete) and not sub["hidden"]
    ]
    if incomplete and not incomplete[0].isalnum():
        for p in ctx.node["params"]:
            if p["param"] != "option" or p["hidden"]:
                continue
            if not p["multiple"] and ctx.values.get(p["name"]) is not None:
                continue
            items += [
                (name, p["help"], "plain")
                for name in (*p["opts"], *p["secondary"])
                if name.startswith(incomplete)
            ]
    return items


def _root_value(ctx: _Ctx) -> str | None:
    while ctx.parent:
        ctx = ctx.parent
    found = {}
    for p in ctx.node["params"]:
        for opt in ("--root", "--remote"):
            if p["param"] == "option" and opt in p["opts"]:
                value = ctx.values.get(p["name"])
                found[opt] = value if isinstance(value, str) else None
    return root_of(found.get("--root"), found.get("--remote"))


def _ref_value(ctx: _Ctx) -> str | None:
    arguments = [
        ((p["complete"] or {}).get("kind"), p["nargs"], ctx.values.get(p["name"]))
        for p in ctx.node["params"]
        if p["param"] == "argument"
    ]
    return ref_argument(arguments, ctx.rest)


def _split(line: str) -> list[str]:
    """Click's `split_arg_string`: shell words, keeping an unfinished last one."""
    import shlex

    lex = shlex.shlex(line, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    out = []
    try:
        for token in lex:
            out.append(token)
    except ValueError:
        out.append(lex.token)
    return out


# --- Output details Typer gets from Rich ----------------------------------------------


def _zsh_escape(s: str) -> str:
    return (
        s.replace('"', '""')
        .replace("'", "''")
        .replace("$", "\\$")
        .replace("`", "\\`")
        .replace(":", r"\\:")
    )


def _help_width(environ) -> int:
    """The width Rich wraps help text to, as Typer's console finds it."""
    for var in ("TERMINAL_WIDTH", "COLUMNS"):
        value = environ.get(var, "")
        if value.isdigit():
            return int(value)
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).columns or 80
        except (OSError, ValueError):
            pass
    return 80


def _wrap(text: str, width: int) -> str:
    """Rich's word wrap (`divide_line` with folding) of text rendered without wrapping:
    Typer passes help through a Rich console, which wraps it to the terminal width."""
    if len(text) <= width and "\n" not in text:
        return text
    import re

    out = []
    for line in text.split("\n"):
        breaks, offset = [], 0
        for match in re.finditer(r"\s*\S+\s*", line):
            start, word = match.start(), match.group()
            length = len(word.rstrip())
            if width - offset >= length:
                offset += len(word)
            elif length > width:
                chunks = [word[i : i + width] for i in range(0, len(word), width)]
                for n, chunk in enumerate(chunks):
                    if start:
                        breaks.append(start)
                    if n == len(chunks) - 1:
                        offset = len(chunk)
                    else:
                        start += len(chunk)
            elif offset and start:
                breaks.append(start)
                offset = len(word)
        for a, b in zip([0, *breaks], [*breaks, len(line)]):
            piece = line[a:b]
            excess = len(piece) - width
            if excess > 0:
                trailing = len(piece) - len(piece.rstrip())
                piece = piece[: len(piece) - min(trailing, excess)][:width]
            out.append(piece)
    return "\n".join(out).rstrip("\n")


if __name__ == "__main__":
    from .completers import main

    sys.exit(main(sys.argv[1:]))
