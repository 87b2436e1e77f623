"""One object that owns how a command reports: a table for people, --plain, --json, -q.

stdout carries data only; notes and warnings go to stderr (silenced by -q). Rich is
imported only when a human-readable table is actually drawn.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from contextlib import contextmanager

from ..errors import Error, InvalidInput


class PipeClosed(BaseException):
    """stdout was closed by the reader (`modelreg ls | head -1`): stop quietly.

    A BaseException so that nothing between the write and `main` mistakes it for an
    error (Typer's own handler would turn a BrokenPipeError into exit 1).
    """


# One encoder for every cell: json.dumps with options builds a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True)
_PLAIN_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\r": "\\r", "\n": "\\n"})


class StdoutFailed(Error):
    """Writing the result failed (`modelreg ls > /dev/full`, or stdout closed): exit 1."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(f"cannot write to standard output: {exc.strerror or exc}")


def _pipe_closed() -> None:
    raise PipeClosed()


def _stdout():
    # With fd 1 closed at start-up Python sets sys.stdout to None; that is a write error too.
    if sys.stdout is None:
        raise StdoutFailed(OSError(errno.EBADF, os.strerror(errno.EBADF)))
    return sys.stdout


# Named escapes for the controls people know by sight; every other non-printable
# character is written by its code point, so nothing reaches the terminal as a control.
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_char(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def term_safe(value) -> str:
    """User text made safe for a terminal: controls and other non-printables as visible escapes.

    ESC, OSC title sequences, CR and backspace from a description, metadata, a --reason
    or a file name would otherwise act on the reader's terminal (as git and ls quote
    names). C0, DEL, C1 (U+0080-U+009F), bidi overrides, line and paragraph separators
    all become `\\x1b`, `\\u009b`, `\\u202e`...; `\\t`, `\\n` and `\\r` keep their names.
    Backslashes are left alone: human output is for reading; `--plain` and `--json` are
    the exact forms.
    """
    text = value if type(value) is str else str(value)
    if text.isprintable():  # the common case, at C speed: `ls NAME` of 10,000 versions
        return text
    return "".join(_escape_char(c) for c in text)


# SGR codes of the few styles human tables use; see colour_enabled.
STYLES = {"header": "1", "ref": "36", "alias": "33", "bad": "31"}


def colour_enabled() -> bool:
    """SPEC §4: colour only when stdout is a terminal, never with NO_COLOR or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except (OSError, ValueError):
        return False


def plain_value(value) -> str:
    """One `--plain` cell, as modelreg(1) defines it.

    Empty is `-` (a shell `read` with IFS set to a tab merges empty fields), lists are
    comma-joined, objects compact JSON with sorted keys, and no cell holds a tab or a
    newline.
    """
    kind = type(value)  # the common cells first: `ls NAME` of 10,000 versions has 100,000
    if kind is str:
        if value.isprintable() and "\\" not in value:  # no tab, newline or backslash to escape
            return value or "-"
        return value.translate(_PLAIN_ESCAPES)
    if kind is int:
        return str(value)
    if value is None or value == "" or value == [] or value == ():
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(plain_value(v) for v in value)
    if isinstance(value, dict):
        return _COMPACT.encode(value).translate(_PLAIN_ESCAPES)
    return str(value).translate(_PLAIN_ESCAPES)


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)


def human_time(text: str | None) -> str:
    """RFC 3339 to `YYYY-MM-DD HH:MM:SS` (UTC), for tables."""
    if not text:
        return ""
    return text[:19].replace("T", " ")


class Output:
    def __init__(self, json_mode: bool = False, plain: bool = False, quiet: bool = False) -> None:
        chosen = [name for name, on in (("--json", json_mode), ("--plain", plain), ("--quiet", quiet)) if on]
        if len(chosen) > 1:
            raise InvalidInput(f"{' and '.join(chosen)} cannot be used together")
        self.mode = "json" if json_mode else "plain" if plain else "quiet" if quiet else "human"
        self._console = None
        self._err_console = None

    @property
    def quiet(self) -> bool:
        return self.mode == "quiet"

    # -- stdout ----------------------------------------------------------------------

    def write(self, text: str = "") -> None:
        try:
            _stdout().write(text + "\n")
        except BrokenPipeError:
            raise PipeClosed() from None
        except OSError as exc:
            raise StdoutFailed(exc) from None

    def flush(self) -> None:
        try:
            _stdout().flush()
        except BrokenPipeError:
            raise PipeClosed() from None
        except OSError as exc:
            raise StdoutFailed(exc) from None

    def json(self, document) -> None:
        self.write(json.dumps(document, indent=2, ensure_ascii=False))

    def report(self, form, data, human=None) -> None:
        """Write a command's result as its `records.Form` declares it: the JSON document,
        the `--plain` rows or the `-q` ids. `human(data)` draws the default output; without
        it, people get the `-q` lines too."""
        if self.mode == "json":
            self.json(form.document(data))
        elif self.mode == "plain":
            self.rows(form.plain(data))
        elif self.mode == "human" and human is not None:
            human(data)
        elif form.quiet is not None:
            self.lines(form.quiet(data))

    def rows(self, rows) -> None:
        self.lines("\t".join([plain_value(v) for v in row]) for row in rows)

    def lines(self, lines) -> None:
        """One line per item, written in large blocks (10,000 rows are one write, not 10,000)."""
        block: list[str] = []
        for line in lines:
            block.append(str(line))
            if len(block) >= 4096:
                self.write("\n".join(block))
                block = []
        if block:
            self.write("\n".join(block))

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            # Off a terminal nothing is truncated: a pipe gets every column in full.
            self._console = Console(file=_stdout(), soft_wrap=False,
                                    width=None if _stdout().isatty() else 10_000, highlight=False,
                                    color_system="auto" if colour_enabled() else None)
            # Rich's own handler exits 1 on a closed pipe; SPEC §4 wants a quiet exit 0.
            self._console.on_broken_pipe = _pipe_closed
        return self._console

    def table(self, columns: list[str], rows: list[list], title: str | None = None, empty: str | None = None,
              styles: list[str | None] | None = None, row_styles: list[str | None] | None = None) -> None:
        """A table for people; every cell and the title pass through term_safe.

        `styles` names a STYLES entry per column, `row_styles` one per row for the last
        column (a dangling link's source); both apply only when colour_enabled().
        """
        if not rows and empty:
            self.note(empty)
            return
        # Drawn here rather than with Rich: a Rich table of 10,000 versions takes seconds.
        cells = [["" if c is None else term_safe(c) for c in row] for row in rows]
        widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(columns)]

        def line(values) -> str:
            return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

        text = [term_safe(title)] if title else []
        if not colour_enabled():
            text += [line(columns), "─" * (sum(widths) + 2 * (len(widths) - 1))]
            text += [line(row) for row in cells]
            self.write("\n".join(text))
            return
        # Codes wrap the padded text, so widths stay those of the visible characters.
        codes = [STYLES.get(s) if s else None for s in (styles or [None] * len(columns))]
        last = len(columns) - 1

        def coloured(values, row_style=None) -> str:
            parts = []
            for i, (v, w) in enumerate(zip(values, widths)):
                code = STYLES.get(row_style) if i == last and row_style else codes[i]
                pad = " " * (w - len(v)) if i < last else ""
                parts.append(f"\x1b[{code}m{v}\x1b[0m{pad}" if code and v else v + pad)
            return "  ".join(parts).rstrip()

        text += [f"\x1b[{STYLES['header']}m{line(columns)}\x1b[0m", "─" * (sum(widths) + 2 * (len(widths) - 1))]
        text += [coloured(row, row_styles[n] if row_styles else None) for n, row in enumerate(cells)]
        self.write("\n".join(text))

    def render(self, renderable) -> None:
        try:
            self.console.print(renderable)
        except BrokenPipeError:
            raise PipeClosed() from None
        except OSError as exc:
            raise StdoutFailed(exc) from None

    # -- stderr ----------------------------------------------------------------------

    def note(self, message: str) -> None:
        if not self.quiet:
            print(f"modelreg: {term_safe(message)}", file=sys.stderr)

    def warn(self, message: str) -> None:
        if not self.quiet:
            print(f"modelreg: warning: {term_safe(message)}", file=sys.stderr)

    @contextmanager
    def progress(self, description: str, measure):
        """Yields an advance(n) callback; draws a bar only on a terminal, and not with -q.

        `measure()` gives the total in bytes; it is called only when a bar could be drawn,
        so that scripts never pay for sizing work nobody sees. The library calls advance
        per chunk copied or hashed; Rich redraws at most 10 times a second from its own
        thread, so a call costs a lock and an addition. The bar is transient: it is
        cleared when the block ends, by success, error or Ctrl-C alike.
        """
        drawn = not self.quiet and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        total = measure() if drawn else 0
        if total < 64 * 1024 * 1024:
            yield lambda n: None
            return
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TimeRemainingColumn,
                                   TransferSpeedColumn)

        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                      transient=True, refresh_per_second=10) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)
