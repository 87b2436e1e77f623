"""Man-page generator: roff pages from the Click command tree plus hand-written prose.

Owns `man/*.1`. Typer keeps Click private, so click-man cannot read our app; this
walks the tree that `typer.main.get_command(app)` returns and renders one page for
the program and one per top-level command (a command group gets a single page that
covers its subcommands, like git-config). Synopsis, options and examples come from
the command tree; the `--plain` columns and `--json` keys from the output forms
declared in `modelreg.records`; description, output, exit status and the rest from
the text files of `cli/manprose/`.

    python -m modelreg.cli.manpage [--check] [--out man/]

Nothing here depends on the current date or the environment, so the committed pages
are reproducible and a test can regenerate and compare them.
"""

from __future__ import annotations

import enum
import inspect
import re
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECTIONS = (
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "OPTIONS",
    "OUTPUT",
    "EXIT STATUS",
    "ENVIRONMENT",
    "FILES",
    "EXAMPLES",
    "SEE ALSO",
)

_EXAMPLES_HEADING = "Examples:"


# --- reading the command tree -------------------------------------------------


@dataclass(frozen=True)
class HelpParts:
    summary: str
    body: list[str]  # paragraphs between the summary and the Examples block
    examples: list[str]  # dedented lines of the Examples block, heading excluded


def split_help(text: str | None) -> HelpParts:
    """Split a command's help into summary, body paragraphs and Examples lines.

    The Examples block starts at a paragraph whose first line is `Examples:` and
    runs to the end, so it may hold several blank-separated groups. `\\b` lines
    (Click's "do not rewrap" marker) and anything after `\\f` are dropped.
    """
    text = inspect.cleandoc(text or "").partition("\f")[0]
    paragraphs = []
    for chunk in re.split(r"\n\s*\n", text):
        lines = [ln for ln in chunk.split("\n") if ln.strip() != "\b"]
        if any(ln.strip() for ln in lines):
            paragraphs.append("\n".join(lines).strip("\n"))
    examples: list[str] = []
    for i, para in enumerate(paragraphs):
        if para.strip().startswith(_EXAMPLES_HEADING):
            block = "\n\n".join(paragraphs[i:]).strip()
            block = block[len(_EXAMPLES_HEADING) :].strip("\n")
            examples = inspect.cleandoc("\n" + block).split("\n") if block else []
            paragraphs = paragraphs[:i]
            break
    if not paragraphs:
        return HelpParts("", [], examples)
    return HelpParts(_unwrap(paragraphs[0]), [_unwrap(p) for p in paragraphs[1:]], examples)


def walk_commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Yield (path, command) for every visible command under `group`, groups included."""
    for name, cmd in getattr(group, "commands", {}).items():
        if getattr(cmd, "hidden", False):
            continue
        yield (*path, name), cmd
        yield from walk_commands(cmd, (*path, name))


def is_group(cmd: Any) -> bool:
    return isinstance(getattr(cmd, "commands", None), Mapping)


def visible_params(cmd: Any) -> list[Any]:
    # `.params` excludes --help, which Click adds per context; no page lists it.
    return [p for p in cmd.params if not getattr(p, "hidden", False)]


def _unwrap(paragraph: str) -> str:
    return " ".join(line.strip() for line in paragraph.split("\n"))


def _is_option(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "option"


def _is_flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False) or getattr(param, "count", False))


def _is_variadic(param: Any) -> bool:
    return param.nargs == -1 or bool(getattr(param, "multiple", False))


def _choices(param: Any) -> list[str] | None:
    from ._typer_private import param_choices

    return param_choices(param)


def _metavar(param: Any) -> str:
    """The bare value name: Typer metavars often carry their own `[...]` or `...`,
    which the synopsis adds itself."""
    if not param.metavar:
        return (param.name or "value").upper()
    core = param.metavar.strip()
    if core.startswith("[") and core.endswith("]"):
        core = core[1:-1]
    return core.removesuffix("...")


def _default_text(param: Any) -> str | None:
    show = getattr(param, "show_default", None)
    if isinstance(show, str):
        return show
    if not show or not _is_option(param):
        return None
    value = param.default
    if value is None or callable(value) or value in ((), [], ""):
        return None
    if _is_flag(param):
        # A lone flag defaults to off, which needs no saying; a --x/--no-x pair
        # names the side that is on.
        if not param.secondary_opts:
            return None
        return (param.opts if value else param.secondary_opts)[-1]
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v.value if isinstance(v, enum.Enum) else v) for v in value)
    return str(value)


# --- roff ----------------------------------------------------------------------

# groff maps these ASCII characters to typographic ones (curly quotes, modifier
# letters, hyphens), which breaks commands pasted from a rendered page.
_ROFF_CHARS = {
    "\\": r"\e",
    "-": r"\-",
    "'": r"\(aq",
    "`": r"\(ga",
    "^": r"\(ha",
    "~": r"\(ti",
    "\t": " ",
}


def esc(text: str) -> str:
    """Escape plain text for roff; non-ASCII becomes \\[uXXXX] so pages are pure ASCII."""
    out = []
    for ch in text:
        if ch in _ROFF_CHARS:
            out.append(_ROFF_CHARS[ch])
        elif ord(ch) > 126 or (ord(ch) < 32 and ch != "\n"):
            out.append(f"\\[u{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def _line(text: str) -> str:
    # A text line starting with a dot or apostrophe would be read as a request; one
    # starting with a space would force a break.
    return "\\&" + text if text[:1] in (".", "'", " ") else text


def _arg(text: str) -> str:
    """A quoted macro argument (already escaped)."""
    return '"' + text.replace('"', r"\(dq") + '"'


def _bold(text: str) -> str:
    return r"\fB" + esc(text) + r"\fR"


def _ital(text: str) -> str:
    return r"\fI" + esc(text) + r"\fR"


_CODE = re.compile(r"`([^`]+)`")
_PAGE_REF = re.compile(r"([\w.-]+)\((\d)\)")
_EMPH = re.compile(r"(?<![\w*])\*([A-Za-z](?:[\w ./=-]*[\w./=-])?)\*(?![\w*])")


def _page_ref(name: str, section: str = "1") -> str:
    return rf"\fB{esc(name)}\fR({section})"


def inline(text: str) -> str:
    """Escape text with light markup: `code` is bold, `page(1)` a page reference,
    *METAVAR* italic."""
    pieces = []
    pos = 0
    for m in _CODE.finditer(text):
        pieces.append(_EMPH.sub(lambda e: _ital(e.group(1)), esc(text[pos : m.start()])))
        page = _PAGE_REF.fullmatch(m.group(1))
        pieces.append(_page_ref(*page.groups()) if page else _bold(m.group(1)))
        pos = m.end()
    pieces.append(_EMPH.sub(lambda e: _ital(e.group(1)), esc(text[pos:])))
    return "".join(pieces)


# Break after a sentence so roff puts sentence spacing there and diffs stay small.
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]`][.!?])(?<!e\.g\.)(?<!i\.e\.) +(?=[A-Z`*(])")


def _text_lines(text: str) -> list[str]:
    text = _unwrap(text).strip()
    pieces, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if text.count("`", 0, m.start()) % 2 == 0:  # not inside a `code` span
            pieces.append(text[start : m.start()])
            start = m.end()
    pieces.append(text[start:])
    return [_line(ln) for p in pieces for ln in _wrap(inline(p))]


def _wrap(text: str, width: int = 80) -> list[str]:
    """Break a rendered sentence at spaces; roff refills it, and short source lines
    keep diffs readable."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def prose_to_roff(text: str | None) -> list[str]:
    """Render hand-written prose, a small subset of Markdown.

    Paragraphs are separated by blank lines. A paragraph that is one `## Title` line
    is a subsection; one whose lines all start with 4 spaces is a literal block; one
    of `- ` items is a bullet list; one whose first line ends in `::` is a list of
    terms (a `TERM::` line, then its indented text). Inline: `code` is bold,
    `page(1)` a page reference, *METAVAR* italic.
    """
    out: list[str] = []
    # dedent, not cleandoc: text read from a file has its first line at the margin too,
    # and cleandoc would then strip a literal block's indent when nothing else follows.
    for para in re.split(r"\n\s*\n", textwrap.dedent(text or "").strip("\n")):
        if not para.strip():
            continue
        lines = para.split("\n")
        if len(lines) == 1 and para.startswith("## "):
            out.append(".SS " + _arg(inline(para[3:].strip())))
        elif all(ln.startswith("    ") or not ln.strip() for ln in lines):
            out += _literal(inspect.cleandoc("\n" + para).split("\n"))
        elif lines[0].startswith("- "):
            for item in re.split(r"\n(?=- )", para):
                out += [".IP \\(bu 2", *_text_lines(item[2:])]
            out.append(".PP")
        elif lines[0].rstrip().endswith("::"):
            out += _definitions(lines)
        else:
            out += [".PP", *_text_lines(para)]
    return out


def _definitions(lines: list[str]) -> list[str]:
    out: list[str] = []
    term, body = None, []
    for ln in [*lines, "::"]:
        if ln.rstrip().endswith("::") and not ln.startswith(" "):
            if term is not None:
                out += [".TP", _line(inline(term)), *_text_lines(" ".join(body))]
            term, body = ln.rstrip()[:-2], []
        else:
            body.append(ln.strip())
    return out + [".PP"]


def _literal(lines: list[str]) -> list[str]:
    body = [_line(esc(ln.rstrip())) if ln.strip() else r"\&" for ln in lines]
    return [".PP", ".RS 4", ".EX", *body, ".EE", ".RE"]


def _tidy(lines: list[str]) -> list[str]:
    """Drop paragraph breaks that do nothing: after a heading, before a heading or a
    list item, doubled, or last."""
    out: list[str] = []
    for i, ln in enumerate(lines):
        if ln == ".PP":
            after = lines[i + 1] if i + 1 < len(lines) else ".SH"
            if (out and out[-1].startswith((".SH", ".SS", ".PP"))) or after.startswith(
                (".SH", ".SS", ".PP", ".TP", ".IP")
            ):
                continue
        out.append(ln)
    return out


# --- pages ---------------------------------------------------------------------


def _option_tag(param: Any) -> str:
    """OPTIONS list tag: `-o, --out DIR` (bold names, italic value)."""
    if not _is_option(param):
        return _argument(param)
    names = ", ".join(_bold(o) for o in [*param.opts, *param.secondary_opts])
    if _is_flag(param):
        return names
    return names + " " + _value_spec(param)


def _argument(param: Any) -> str:
    return _ital(_metavar(param)) + ("..." if param.nargs == -1 else "")


def _value_spec(param: Any) -> str:
    choices = _choices(param)
    if choices and not param.metavar:
        return "|".join(_bold(c) for c in choices)
    return _ital(_metavar(param))


def _synopsis_item(param: Any) -> str:
    if not _is_option(param):
        return _argument(param) if param.required else f"[{_argument(param)}]"
    short = [o for o in param.opts if re.fullmatch(r"-[^-]", o)]
    name = (short or param.opts)[0]
    if param.secondary_opts:
        item = _bold(name) + "|" + "|".join(_bold(o) for o in param.secondary_opts)
    elif _is_flag(param):
        item = _bold(name)
    else:
        item = _bold(name) + r"\~" + _value_spec(param)
    item = item if param.required else f"[{item}]"
    return item + ("..." if _is_variadic(param) else "")


def _synopsis(words: list[str], cmd: Any) -> list[str]:
    params = visible_params(cmd)
    options = [p for p in params if _is_option(p)]
    arguments = [p for p in params if not _is_option(p)]
    items = [_synopsis_item(p) for p in options + arguments]
    if is_group(cmd):
        items.append(_ital("COMMAND") + " [" + _ital("ARGS") + "]...")
    return [".SY " + _arg(esc(" ".join(words))), *(_line(i) for i in items), ".YS"]


def _option_entries(params: list[Any]) -> list[str]:
    out: list[str] = []
    for param in params:
        notes = []
        help_text = _unwrap(inspect.cleandoc(getattr(param, "help", None) or "")).strip()
        if help_text:
            notes.append(help_text if help_text.endswith((".", "!", "?")) else help_text + ".")
        if param.required and _is_option(param):
            notes.append("Required.")
        repeat_said = re.search(r"repeatable|more than once", help_text, re.I)
        if _is_variadic(param) and _is_option(param) and not repeat_said:
            notes.append("May be given more than once.")
        default = _default_text(param)
        if default is not None:
            notes.append(f"Default: `{default}`.")
        out += [".TP", _line(_option_tag(param)), *_text_lines(" ".join(notes) or "(undocumented)")]
    return out


def _leaves(words: tuple[str, ...], cmd: Any) -> list[tuple[tuple[str, ...], Any]]:
    if not is_group(cmd):
        return [(words, cmd)]
    found: list[tuple[tuple[str, ...], Any]] = []
    for path, sub in walk_commands(cmd, words):
        if not is_group(sub):
            found.append((path, sub))
    return found


def _exit_status(codes: Mapping[Any, str] | None) -> list[str]:
    out: list[str] = []
    for code in sorted(codes or {}, key=int):
        out += [".TP", _line(_bold(str(code))), *_text_lines(codes[code])]
    return out


def _output(prose: Mapping[str, Any], prog: str) -> list[str]:
    out = prose_to_roff(prose.get("output"))
    columns: Mapping[str, list[str]] = prose.get("plain_columns", {})
    rows: Mapping[str, str] = prose.get("plain_rows", {})
    fields: Mapping[str, list[str]] = prose.get("plain_fields", {})
    if columns:
        out += [".SS " + _arg(esc("--plain"))]
        out += _text_lines(
            "Tab-separated, no header, in this column order "
            f"(value formats are described in `{prog}(1)`):"
        )
        for form, cols in columns.items():
            what = f"one line per {rows[form]}" if form in rows else "one line"
            line = what[0].upper() + what[1:] + ": " + ", ".join(f"*{c}*" for c in cols) + "."
            if form in fields:
                line += " Fields, in this order: " + ", ".join(f"`{f}`" for f in fields[form]) + "."
            out += [".TP", _line(_bold(f"{prog} {form}")), *_text_lines(line)]
    keys: Mapping[str, list[str]] = prose.get("json_keys", {})
    shapes: Mapping[str, str] = prose.get("json_shape", {})
    if keys:
        out += [".SS " + _arg(esc("--json"))]
        out += _text_lines("One JSON document on standard output holding at least these keys:")
        for form, names in keys.items():
            shape = "A list of objects" if shapes.get(form) == "list" else "An object"
            line = f"{shape} with " + ", ".join(f"`{k}`" for k in names) + "."
            out += [".TP", _line(_bold(f"{prog} {form}")), *_text_lines(line)]
    return out


def _environment(top: Mapping[str, Any], prose: Mapping[str, Any]) -> list[str]:
    env: Mapping[str, str] = top.get("environment", {})
    names = prose.get("environment", list(env))
    out: list[str] = []
    for name in names:
        out += [".TP", _line(_bold(name)), *_text_lines(env.get(name, ""))]
    return out or _text_lines("None.")


def _description(help_parts: HelpParts, prose: Mapping[str, Any]) -> list[str]:
    # The prose is written to be the whole story; the --help body is only the short
    # version of it, so it fills in where no prose was written.
    if prose.get("description"):
        return prose_to_roff(prose["description"])
    return prose_to_roff("\n\n".join(help_parts.body))


def _header(title: str, source: str, prog: str) -> list[str]:
    # The date field stays empty: a page must not change when nothing else did.
    return [
        ".\\\" Generated from the command tree, the output forms of records.py and cli/manprose/; do not edit.",
        ".\\\" Regenerate with `python -m modelreg.cli.manpage`.",
        f".TH {esc(title.upper())} 1 \"\" {_arg(esc(source))} {_arg(esc(prog + ' manual'))}",
        # Hyphenating `.modelreg` or `--no-verify` at a line end would read as part of
        # the name. groff's SY/YS and EX/EE restore hyphenation from register HY, so
        # zero it rather than only saying .nh. Ragged right keeps long literals from
        # stretching the spaces.
        ".nr HY 0",
        ".nh",
        ".ad l",
    ]


def _examples(lines: list[str]) -> list[str]:
    return _literal(lines) if lines else []


def _command_page(
    prog: str,
    name: str,
    cmd: Any,
    group: Any,
    prose: Mapping[str, Any],
    top: Mapping[str, Any],
    source: str,
) -> str:
    help_parts = split_help(cmd.help)
    leaves = _leaves((name,), cmd)
    page = _header(f"{prog}-{name}", source, prog)
    summary = help_parts.summary.rstrip(".") or name
    page += [".SH NAME", *_wrap(f"{esc(prog)}\\-{esc(name)} \\- {inline(summary)}")]

    page += [".SH SYNOPSIS"]
    for words, leaf in leaves:
        page += _synopsis([prog, *words], leaf)

    page += [".SH DESCRIPTION"]
    description = _description(help_parts, prose)
    if is_group(cmd):
        description += [".PP", *_text_lines("Subcommands:")]
        for words, leaf in leaves:
            summary_line = _text_lines(split_help(leaf.help).summary)
            description += [".TP", _line(_bold(" ".join(words))), *summary_line]
    page += description or _text_lines(help_parts.summary or name)

    page += [".SH OPTIONS"]
    for words, leaf in leaves:
        params = visible_params(leaf)
        if is_group(cmd) and params:
            page += [".SS " + _arg(esc(" ".join(words)))]
        page += _option_entries(params)
    # Only options that set something (--root PATH) matter before a command; flags
    # such as --version or --install-completion act on their own.
    global_opts = [p.opts[-1] for p in visible_params(group) if _is_option(p) and not _is_flag(p)]
    if global_opts:
        names = ", ".join(f"`{o}`" for o in global_opts)
        page += [".PP", *_text_lines(f"Global options ({names}) go before the command name; see `{prog}(1)`.")]

    page += [".SH OUTPUT", *(_output(prose, prog) or _text_lines("Nothing on standard output."))]
    codes = {**top.get("exit_status_common", {}), **prose.get("exit_status", {})}
    page += [".SH EXIT STATUS", *(_exit_status(codes) or _exit_status(top.get("exit_status")))]
    page += prose_to_roff(prose.get("exit_status_notes"))
    if codes:
        page += [".PP", *_text_lines(f"See `{prog}(1)` for the meaning of each code in general.")]
    page += [".SH ENVIRONMENT", *_environment(top, prose)]
    files = prose_to_roff(prose.get("files") or top.get("files_default"))
    page += [".SH FILES", *(files or _text_lines(f"See `{prog}(1)`."))]

    examples = _examples(help_parts.examples) if is_group(cmd) else []
    for words, leaf in leaves:
        examples += _examples(split_help(leaf.help).examples)
    examples += prose_to_roff(prose.get("examples"))
    page += [".SH EXAMPLES", *(examples or _text_lines("None."))]

    # `format(5)` in a page's see-also names a section-5 page (modelreg-format(5)).
    see_also = [(prog, "1"), *((f"{prog}-{s[:-3]}", "5") if s.endswith("(5)") else (f"{prog}-{s}", "1")
                               for s in prose.get("see_also", []))]
    page += [".SH SEE ALSO", _line(",\n".join(_page_ref(name, section) for name, section in see_also))]
    return _finish(page)


def _top_page(prog: str, group: Any, pages: list[str], prose: Mapping[str, Any], source: str) -> str:
    help_parts = split_help(group.help)
    page = _header(prog, source, prog)
    page += [".SH NAME", *_wrap(f"{esc(prog)} \\- {inline(help_parts.summary.rstrip('.') or prog)}")]
    page += [".SH SYNOPSIS", *_synopsis([prog], group)]
    description = _description(help_parts, prose)
    page += [".SH DESCRIPTION", *(description or _text_lines(help_parts.summary or prog))]
    commands = [(n, c) for n, c in getattr(group, "commands", {}).items() if not getattr(c, "hidden", False)]
    if commands:
        page += [".SH COMMANDS"]
        for name, cmd in commands:
            summary = split_help(cmd.help).summary
            page += [".TP", _line(_page_ref(f"{prog}-{name}")), *_text_lines(summary)]
    page += [".SH OPTIONS", *(_option_entries(visible_params(group)) or _text_lines("None."))]
    page += [".SH OUTPUT", *(_output(prose, prog) or _text_lines("See each command's page."))]
    codes = _exit_status(prose.get("exit_status"))
    page += [".SH EXIT STATUS", *(codes or _text_lines("See each command's page."))]
    page += prose_to_roff(prose.get("exit_status_notes"))
    page += [".SH ENVIRONMENT", *_environment(prose, prose)]
    page += [".SH FILES", *(prose_to_roff(prose.get("files")) or _text_lines("None."))]
    examples = _examples(help_parts.examples) + prose_to_roff(prose.get("examples"))
    page += [".SH EXAMPLES", *(examples or _text_lines("None."))]
    refs = [_page_ref(p.removesuffix(".1")) for p in sorted(pages)] + [_page_ref(f"{prog}-format", "5")]
    page += [".SH SEE ALSO", _line(",\n".join(refs))]
    return _finish(page)


def _finish(lines: list[str]) -> str:
    return "\n".join(_tidy(lines)) + "\n"


def _package_source(prog: str) -> str:
    try:
        version = __import__(prog).__version__
    except Exception:  # a missing or half-built package still gets pages
        return prog
    return f"{prog} {version}"


def render_pages(
    cli_group: Any,
    prose: Mapping[str, Mapping[str, Any]],
    *,
    prog: str = "modelreg",
    source: str | None = None,
) -> dict[str, str]:
    """Render every page of `cli_group` (a Click group, e.g. `typer.main.get_command(app)`).

    `prose[prog]` holds the program page's prose (description, output, exit_status,
    environment, files, examples) and `prose[<command>]` each command's. Returns
    {filename: roff text}: `<prog>.1` and `<prog>-<command>.1` per visible command.
    `source` is the .TH footer; by default "<prog> <prog.__version__>".
    """
    source = source or _package_source(prog)
    top = prose.get(prog, {})
    pages: dict[str, str] = {}
    for name, cmd in getattr(cli_group, "commands", {}).items():
        if getattr(cmd, "hidden", False):
            continue
        page = _command_page(prog, name, cmd, cli_group, prose.get(name, {}), top, source)
        pages[f"{prog}-{name}.1"] = page
    top_page = _top_page(prog, cli_group, list(pages), top, source)
    return {f"{prog}.1": top_page, **dict(sorted(pages.items()))}


# --- command line --------------------------------------------------------------


def stale_pages(pages: Mapping[str, str], out: Path, prog: str = "modelreg") -> list[str]:
    """Names of pages in `out` that differ from `pages`, are missing, or are left over."""
    stale = [
        n for n, text in pages.items() if not (out / n).is_file() or (out / n).read_text() != text
    ]
    stale += sorted(p.name for p in _own_files(out, prog) if p.name not in pages)
    return stale


def write_pages(pages: Mapping[str, str], out: Path, prog: str = "modelreg") -> list[str]:
    """Write changed pages, remove pages of commands that are gone; return what changed."""
    out.mkdir(parents=True, exist_ok=True)
    changed = stale_pages(pages, out, prog)
    for name in changed:
        if name in pages:
            (out / name).write_text(pages[name])
        else:
            (out / name).unlink()
    return changed


def _own_files(out: Path, prog: str) -> list[Path]:
    if not out.is_dir():
        return []
    return [p for p in out.glob("*.1") if p.name == f"{prog}.1" or p.name.startswith(f"{prog}-")]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m modelreg.cli.manpage", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=Path("man"), help="directory of the pages (default: man)"
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any page is stale")
    args = parser.parse_args(argv)

    # Imported here: rendering works on any Click group and needs neither typer nor
    # the app until a command line asks for our pages.
    import typer

    from modelreg.cli.app import app
    from modelreg.cli.manprose import PROSE  # the prose files, with the records' forms

    pages = render_pages(typer.main.get_command(app), PROSE)
    if args.check:
        stale = stale_pages(pages, args.out)
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        if stale:
            print("run `python -m modelreg.cli.manpage` to regenerate", file=sys.stderr)
        return 1 if stale else 0
    for name in write_pages(pages, args.out):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
