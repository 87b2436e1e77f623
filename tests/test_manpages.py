"""The man pages: committed pages match the command tree and the prose, every page has
the sections our pages promise, roff renders without warnings, and nothing in the tree
lacks the help text the pages are built from."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from modelreg.cli import manpage
from modelreg.cli.manprose import PROSE

MAN_DIR = Path(__file__).resolve().parent.parent / "man"
REGENERATE = "run `python -m modelreg.cli.manpage` in the repository root and commit man/"
PROG = "modelreg"


@pytest.fixture(scope="module")
def tree():
    import typer

    from modelreg.cli.app import app

    return typer.main.get_command(app)


@pytest.fixture(scope="module")
def generated(tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("man")
    manpage.write_pages(manpage.render_pages(tree, PROSE), out)
    return out


def _pages(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.glob("*.1"))} if directory.is_dir() else {}


def _leaves(tree):
    return [(path, cmd) for path, cmd in manpage.walk_commands(tree) if not manpage.is_group(cmd)]


# -- (a) the committed pages are what the generator makes now ---------------------------


def test_committed_pages_match_the_command_tree(generated):
    committed, fresh = _pages(MAN_DIR), _pages(generated)
    stale = sorted(n for n in committed.keys() | fresh.keys() if committed.get(n) != fresh.get(n))
    assert not stale, f"man pages out of date: {', '.join(stale)}; {REGENERATE}"


def test_one_page_per_command(tree, generated):
    expected = {f"{PROG}.1"} | {f"{PROG}-{name}.1" for name, cmd in tree.commands.items() if not cmd.hidden}
    assert set(_pages(generated)) == expected


def test_generation_is_reproducible(tree, generated):
    # No date, no environment: a second run must give the same bytes.
    assert manpage.render_pages(tree, PROSE) == _pages(generated)
    for text in _pages(generated).values():
        assert re.search(r'^\.TH \S+ 1 "" ', text, re.M), "the .TH date must stay empty"


# -- (b) every page has every section -------------------------------------------------------


def test_every_page_has_the_required_sections_in_order(generated):
    for name, text in _pages(generated).items():
        found = [h.strip('"') for h in re.findall(r"^\.SH (.+)$", text, re.M)]
        missing = [s for s in manpage.SECTIONS if s not in found]
        assert not missing, f"{name} lacks {missing}"
        order = [s for s in found if s in manpage.SECTIONS]
        assert order == list(manpage.SECTIONS), f"{name}: sections out of order: {order}"


# -- (c) the roff is valid -----------------------------------------------------------------

_KNOWN_REQUESTS = re.compile(r"^\.(\\\"|TH|SH|SS|PP|TP|IP|RS|RE|EX|EE|SY|YS|nr|nh|ad)( |$)")


def test_pages_are_plain_ascii_roff(generated):
    for name, text in _pages(generated).items():
        assert text.isascii(), f"{name}: non-ASCII must be written as \\[uXXXX]"
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{name}:{number}: {line!r}"
            assert not line.startswith("'"), where
            assert not line.startswith(".") or _KNOWN_REQUESTS.match(line), where
            assert line == line.strip() or line.startswith("\\&"), where


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_groff_renders_every_page_without_warnings(generated):
    for page in sorted(generated.glob("*.1")):
        result = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True
        )
        assert result.returncode == 0 and not result.stderr, f"{page.name}:\n{result.stderr}"


@pytest.mark.skipif(shutil.which("mandoc") is None, reason="mandoc is not installed")
def test_mandoc_lint_finds_nothing(generated):
    for page in sorted(generated.glob("*.1")):
        result = subprocess.run(
            ["mandoc", "-Tlint", "-W", "warning", str(page)], capture_output=True, text=True
        )
        # The empty date is deliberate (reproducible pages), and mandoc always says so.
        complaints = [ln for ln in result.stdout.splitlines() + result.stderr.splitlines()
                      if ln and "missing date" not in ln]
        assert not complaints, f"{page.name}:\n" + "\n".join(complaints)


# -- (d) the command tree documents itself (STYLE habit 7) ---------------------------------


def test_every_command_has_help(tree):
    assert manpage.split_help(tree.help).summary, "the program needs help text"
    missing = [" ".join(path) for path, cmd in manpage.walk_commands(tree) if not manpage.split_help(cmd.help).summary]
    assert not missing, f"commands without help text: {missing}"


def test_every_option_and_argument_has_help(tree):
    commands = [((PROG,), tree), *manpage.walk_commands(tree)]
    missing = [
        f"{' '.join(path)} {param.opts[0] if param.opts else param.name}"
        for path, cmd in commands
        for param in manpage.visible_params(cmd)
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert not missing, f"parameters without help text: {missing}"


def test_every_command_has_an_examples_block(tree):
    missing = [
        " ".join(path)
        for path, cmd in _leaves(tree)
        if not any(line.lstrip().startswith(f"$ {PROG} ") for line in manpage.split_help(cmd.help).examples)
    ]
    assert not missing, f"commands without an `Examples:` block of `$ {PROG} ...` lines: {missing}"


# -- the prose covers the tree, and the tree the prose --------------------------------------


def test_prose_matches_the_commands(tree):
    commands = {name for name, cmd in tree.commands.items() if not cmd.hidden}
    assert set(PROSE) - {PROG} == commands, "manprose.PROSE must have exactly one entry per command"
    for name in commands:
        for key in ("description", "output", "exit_status"):
            assert PROSE[name].get(key), f"PROSE[{name!r}] lacks {key!r}"


def _forms(prose: dict, key: str, path: tuple[str, ...]) -> list[str]:
    words = " ".join(path)
    return [f for f in prose.get(key, {}) if f == words or f.startswith(words + " ")]


@pytest.mark.parametrize(("option", "key"), [("--plain", "plain_columns"), ("--json", "json_keys")])
def test_output_options_have_documented_formats(tree, option, key):
    undocumented = [
        " ".join(path)
        for path, cmd in _leaves(tree)
        if any(option in p.opts for p in manpage.visible_params(cmd)) and not _forms(PROSE[path[0]], key, path)
    ]
    assert not undocumented, f"commands with {option} but no {key} in manprose: {undocumented}"


def test_prose_forms_are_well_formed():
    for name, prose in PROSE.items():
        if name == PROG:
            continue
        for form in [*prose.get("plain_columns", {}), *prose.get("json_keys", {})]:
            assert form.split()[0] == name, f"PROSE[{name!r}] documents a form of another command: {form!r}"
        for form in prose.get("json_keys", {}):
            assert prose.get("json_shape", {}).get(form) in ("object", "list"), f"json_shape[{form!r}]"
        for form in [*prose.get("plain_rows", {}), *prose.get("plain_fields", {})]:
            assert form in prose.get("plain_columns", {}), f"{form!r} has rows or fields but no columns"
        for code in prose.get("exit_status", {}):
            assert code in PROSE[PROG]["exit_status"], f"PROSE[{name!r}] uses undocumented exit code {code}"


# -- the generator's own rules ---------------------------------------------------------------


def test_split_help_finds_summary_body_and_examples():
    parts = manpage.split_help(
        "Do a thing.\n\nMore about\nit.\n\n\b\nExamples:\n  $ modelreg x --y\n\n  $ modelreg z\n"
    )
    assert parts.summary == "Do a thing."
    assert parts.body == ["More about it."]
    assert parts.examples == ["$ modelreg x --y", "", "$ modelreg z"]


def test_roff_escaping():
    assert manpage.esc(r"--a\b 'q' ^~`") == r"\-\-a\eb \(aqq\(aq \(ha\(ti\(ga"
    assert manpage.esc("a\u2192b") == r"a\[u2192]b"
    assert manpage.prose_to_roff(".hidden and 'quoted'") == [".PP", r"\&.hidden and \(aqquoted\(aq"]
    assert manpage.prose_to_roff("`x` and *REF*") == [".PP", r"\fBx\fR and \fIREF\fR"]


# -- (e) the format page ---------------------------------------------------------------------

FORMAT_PAGE = MAN_DIR / "modelreg-format.5"


def test_the_format_page_names_every_file_of_the_layout():
    from modelreg import layout

    text = FORMAT_PAGE.read_text().replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").replace("\\fI", "")
    prefix = layout.collection_prefix("e", "p", "n")
    keys = (layout.CONFIG, layout.blob_key("ab" * 32), layout.claim_key("e", "p", "n"), layout.change_key(prefix, 0),
            layout.manifest_key(prefix, "cd" * 32), layout.snapshot_key(prefix), layout.GC_LOCK, layout.GC_LOCK_FORMAT1)
    for key in keys:
        # The fixed parts of each key (not the names and digests filled in) must be on the page.
        fixed = [part for part in key.split("/") if part not in ("e", "p", "n")
                 and not re.fullmatch(r"[0-9a-f]{2,64}(\.json)?|[0-9]+\.json|ab+|cd+", part)]
        missing = [part for part in fixed if part not in text]
        assert fixed and not missing, f"modelreg-format(5) does not describe {key}: {missing}"
    assert f"{layout.SEQ_DIGITS} decimal digits" in text
    for field in ("txid", "events", "add", "delete", "aliases", "next", "marks"):
        assert f"\\fB{field}" in text or f"B {field}" in text, field


def test_the_format_page_is_installed_in_section_5():
    import tomllib

    data = tomllib.loads((MAN_DIR.parent / "pyproject.toml").read_text())
    shared = data["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["man/modelreg-format.5"] == "share/man/man5/modelreg-format.5"
    pages = {p.name for p in MAN_DIR.glob("*.1")}
    assert {k.removeprefix("man/") for k, v in shared.items() if v.startswith("share/man/man1/")} == pages


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_groff_renders_the_format_page_without_warnings():
    result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(FORMAT_PAGE)], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr, result.stderr


@pytest.mark.skipif(shutil.which("mandoc") is None, reason="mandoc is not installed")
def test_mandoc_lint_finds_nothing_in_the_format_page():
    result = subprocess.run(["mandoc", "-Tlint", "-W", "warning", str(FORMAT_PAGE)], capture_output=True, text=True)
    complaints = [ln for ln in result.stdout.splitlines() + result.stderr.splitlines()
                  if ln and "missing date" not in ln]
    assert not complaints, "\n".join(complaints)
