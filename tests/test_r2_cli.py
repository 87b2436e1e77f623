"""Issue 9 "Reliability II": terminal safety, and exit codes and words that disagree.

Human output escapes control characters of user text; colour only on a terminal; the
history page's promises; MODELREG_DEBUG keeps exit codes; `--where` compares JSON with
its type; a write error on stdout is one clean line and exit 1.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

import modelreg
from conftest import make_tree, run
from modelreg.cli import output
from modelreg.errors import InvalidInput, NotFound

# Characters that act on a terminal: ESC (CSI, OSC), BEL, CR, BS, DEL, C1 CSI, a bidi override.
HOSTILE = "\x1b[31m\x1b]0;pwned\x07\r\x08\x7f\x9b\u202e"
# File names may not hold C0/C1 controls (log refuses them), but may hold these.
NAME_TRICKS = "\u202e\u2028\u200b"
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e\u2028\u200b]")


def _raw_controls(text: str) -> list[str]:
    """Controls a terminal would act on (newlines between lines are the output's own)."""
    return RAW_CONTROL.findall(text)


def _ok(result):
    assert result.returncode == 0, result.stderr
    return result


# -- terminal safety ---------------------------------------------------------------------


def test_term_safe_escapes_every_kind_of_control():
    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x202E, 0x200B, 0xFEFF]:
        shown = output.term_safe(f"a{chr(code)}b")
        assert shown.isprintable() and shown.startswith("a") and shown.endswith("b"), hex(code)
        assert len(shown) > 3, hex(code)  # visible, not dropped
    assert output.term_safe("\x1b[31m") == "\\x1b[31m"
    assert output.term_safe("a\tb\nc\rd") == "a\\tb\\nc\\rd"
    assert output.term_safe("\x9b") == "\\u009b"
    assert output.term_safe("naïve ünïcode → ok") == "naïve ünïcode → ok"  # printable text untouched
    assert output.term_safe(3) == "3"


@pytest.fixture
def hostile(isolated_env):
    """A version whose every user-supplied text carries terminal controls (made through the API)."""
    work = isolated_env
    src = make_tree(work / "src", {f"evil{NAME_TRICKS}.bin": b"x", "ok.txt": "fine"})
    reg = modelreg.Registry.init(work)
    reg.log([str(src)], name="m", metadata={f"key{HOSTILE}": f"value{HOSTILE}", "markup": "[bold]x[/bold]"},
            description=f"first line{HOSTILE}\nsecond [red]line[/red]", run=f"run{HOSTILE}", aliases=["best"])
    make_tree(work / "src", {"ok.txt": "changed"})
    reg.log([str(src)], name="m")
    reg.alias("m:v1", ["best"], reason=f"because{HOSTILE}")
    reg.link("m:v0", "reg", description=f"link{HOSTILE}")
    return reg


@pytest.mark.parametrize("args", [
    ["show", "m:v0"], ["show", "reg"], ["ls", "m:v0"], ["ls", "m"], ["ls"], ["history", "m"],
    ["diff", "m:v0", "m:v1"], ["history", "reg"],
])
def test_human_output_shows_controls_as_visible_escapes(mr, hostile, args):
    result = _ok(mr(*args))
    assert _raw_controls(result.stdout) == [], result.stdout
    assert _raw_controls(result.stderr) == [], result.stderr


def test_every_user_field_reaches_the_panel_escaped(mr, hostile):
    shown = _ok(mr("show", "m:v0")).stdout
    for text in ("evil\\u202e\\u2028\\u200b.bin",  # file name
                 "first line\\x1b[31m",  # description
                 "key\\x1b[31m",  # metadata key (values are JSON-escaped)
                 "run\\x1b[31m"):  # --run
        assert text in shown, text
    assert "second [red]line[/red]" in shown  # Rich markup in user text is shown, not applied
    assert '"[bold]x[/bold]"' in shown
    assert "first line" in shown.split("second")[0]  # a multi-line description keeps its lines


def test_history_table_escapes_the_reason(mr, hostile):
    table = _ok(mr("history", "m:best")).stdout
    assert "because\\x1b[31m\\x1b]0;pwned\\x07\\r" in table


def test_json_and_plain_are_unchanged_by_escaping(mr, hostile):
    doc = json.loads(_ok(mr("show", "m:v0", "--json")).stdout)
    assert doc["description"].startswith(f"first line{HOSTILE}")
    assert doc["producer"]["run"] == f"run{HOSTILE}"
    assert any(f["path"] == f"evil{NAME_TRICKS}.bin" for f in doc["files"])
    plain = _ok(mr("ls", "m:v0", "--plain")).stdout
    assert f"evil{NAME_TRICKS}.bin" in plain  # --plain escapes only \\ \t \r \n
    plain = _ok(mr("history", "m:best", "--plain")).stdout
    assert f"because{HOSTILE.replace(chr(13), chr(92) + 'r')}" in plain


def test_error_messages_quoting_user_input_are_escaped(mr, isolated_env):
    bad = f"missing{HOSTILE}"
    for result in (mr("log", bad), run("log", bad)):
        assert result.returncode != 0
        assert result.stdout == ""
        assert _raw_controls(result.stderr) == [], result.stderr
        assert result.stderr.startswith("modelreg: error: ") and "\\x1b[31m" in result.stderr


def test_notes_quoting_file_names_are_escaped(mr, isolated_env):
    make_tree(isolated_env / "d" / f"sub{NAME_TRICKS}" / ".modelreg", {"x": "x"})  # skipped with a note naming it
    make_tree(isolated_env / "d", {f"f{NAME_TRICKS}": "y"})
    result = _ok(mr("log", isolated_env / "d", "-n", "m"))
    assert "sub\\u202e" in result.stderr
    assert _raw_controls(result.stderr) == [], result.stderr


# -- colour ------------------------------------------------------------------------------


def _on_a_terminal(args, env) -> bytes:
    """Run the real command with stdout on a pseudo-terminal; return what it wrote there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "modelreg", *args], stdout=slave, stderr=subprocess.PIPE,
                            env=env)
    os.close(slave)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        data += chunk
    proc.wait()
    os.close(master)
    assert proc.returncode == 0, proc.stderr.read()
    return data


@pytest.fixture
def colour_env(hostile):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    return env


ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.parametrize("args", [["ls"], ["ls", "m"], ["ls", "reg"], ["history", "m"], ["show", "m:v0"]])
def test_colour_on_a_terminal_only(colour_env, args):
    coloured = _on_a_terminal(args, colour_env).decode()
    assert ANSI.search(coloured), coloured
    for env in ({**colour_env, "NO_COLOR": "1"}, {**colour_env, "TERM": "dumb"}):
        assert b"\x1b" not in _on_a_terminal(args, env)
    piped = run(*args, env=colour_env)
    assert piped.returncode == 0 and "\x1b" not in piped.stdout
    # the user's own ESC never survives: every ESC in the output is one of our SGR codes
    assert "\x1b" not in ANSI.sub("", coloured)


@pytest.mark.parametrize("args", [["ls"], ["ls", "m"], ["history", "m"]])
def test_coloured_tables_align_like_plain_ones(colour_env, args):
    coloured = ANSI.sub("", _on_a_terminal(args, colour_env).decode())
    bare = _on_a_terminal(args, {**colour_env, "NO_COLOR": "1"}).decode()
    assert coloured == bare


def test_table_styles_header_refs_aliases_and_dangling(mr, hostile, monkeypatch):
    hostile.rm("m:v0", force=True)
    monkeypatch.setattr(output, "colour_enabled", lambda: True)
    versions = _ok(mr("ls", "m")).stdout
    assert versions.startswith("\x1b[1mversion")
    assert "\x1b[36mv1\x1b[0m" in versions and "\x1b[33mbest, latest\x1b[0m" in versions
    links = _ok(mr("ls", "reg")).stdout
    assert "\x1b[31mm:v0 (dangling)\x1b[0m" in links
    monkeypatch.setattr(output, "colour_enabled", lambda: False)
    assert "\x1b" not in _ok(mr("ls", "m")).stdout


# -- history: every promise of modelreg-history(1) ---------------------------------------


@pytest.fixture
def story(isolated_env):
    """v0 logged with `best`; v1 logged, `best` moved to it, then removed; `prod` set on v1; v2 logged."""
    work = isolated_env
    reg = modelreg.Registry.init(work)
    for n in range(3):
        reg.log([str(make_tree(work / f"c{n}", {"w": f"weights {n}"}))], name="m")
        if n == 0:
            reg.alias("m:v0", ["best"])
        if n == 1:
            reg.alias("m:v1", ["best"])
            reg.unalias("m", ["best"])
            reg.alias("m:v1", ["prod"])
    return reg


def _events(reg, ref):
    return [(e["event"], e.get("version"), e.get("alias")) for e in reg.history(ref)]


def _cli_events(mr, ref):
    result = mr("history", ref, "--json")
    assert result.returncode == 0, result.stderr
    return [(e["event"], e.get("version"), e.get("alias")) for e in json.loads(result.stdout)]


def test_history_selectors_through_api_and_cli(mr, story):
    everything = _events(story, "m")
    assert [e[0] for e in everything] == ["logged", "alias-set", "logged", "alias-moved", "alias-removed",
                                          "alias-set", "logged"]
    v0 = [("logged", 0, None), ("alias-set", 0, "best"), ("alias-moved", 1, "best")]  # moved away from v0
    v1 = [("logged", 1, None), ("alias-moved", 1, "best"), ("alias-removed", 1, "best"), ("alias-set", 1, "prod")]
    digest = story.show("m:v0").digest
    expected = {
        "m": everything,
        "m:v0": v0,
        "m:v1": v1,
        "m:latest": [("logged", 2, None)],
        "m:prod": [("alias-set", 1, "prod")],
        "m:best": [("alias-set", 0, "best"), ("alias-moved", 1, "best"), ("alias-removed", 1, "best")],  # unset now
        f"m:{digest[:8]}": v0,
        f"m:{digest}": v0,
    }
    for ref, events in expected.items():
        assert _events(story, ref) == events, ref
        assert _cli_events(mr, ref) == events, ref


def test_history_of_a_deleted_version_and_a_deleted_collection(mr, story):
    story.rm("m:v0", force=True)
    assert _events(story, "m:v0")[-1][0] == "deleted"
    assert _cli_events(mr, "m:v0")[-1][0] == "deleted"
    story.rm("m", all=True, force=True)
    assert _cli_events(mr, "m")[-1][0] == "collection-deleted"
    assert _cli_events(mr, "m:prod")[0] == ("alias-set", 1, "prod")


@pytest.mark.parametrize("ref, code, error", [
    ("m:v3", 3, NotFound),  # never given
    ("m:v99", 3, NotFound),
    ("m:staging", 3, NotFound),  # an alias never seen
    ("m:deadbeef", 3, NotFound),  # a digest prefix of nothing
    ("nothing", 3, NotFound),
    ("nothing:best", 3, NotFound),
    ("m:bad!alias", 2, InvalidInput),
    ("bad name", 2, InvalidInput),
])
def test_history_exit_codes_the_page_promises(mr, story, ref, code, error):
    with pytest.raises(error):
        story.history(ref)
    result = mr("history", ref)
    assert (result.returncode, result.stdout) == (code, ""), result.stderr
    assert result.stderr.startswith("modelreg: error: ")
    assert mr("history", ref, "-q").returncode == code


def test_history_latest_of_a_collection_without_live_versions_is_not_found(mr, story):
    story.rm("m", all=True, force=True)
    assert mr("history", "m:latest").returncode == 3


def test_history_quiet_prints_nothing(mr, story):
    result = mr("history", "m:v1", "-q")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_history_page_documents_the_selectors():
    from modelreg.cli.manprose import PROSE

    page = PROSE["history"]["description"]
    for word in ("`latest`", "digest", "no longer set", "vN"):
        assert word in page, word
    assert "selector other than an alias" not in " ".join(page.split())  # the old promise of exit 2
    codes = PROSE["history"]["exit_status"]
    assert "alias" in codes[3] and "version" in codes[3]


# -- MODELREG_DEBUG ------------------------------------------------------------------------


@pytest.mark.parametrize("args, code", [
    (["history", "nothing"], 3),
    (["history", "m:bad!alias"], 2),
    (["ls", "m", "--where", "metadata.x=NaN"], 2),
])
def test_debug_adds_a_traceback_and_keeps_the_exit_code(story, args, code):
    env = {**os.environ, "MODELREG_DEBUG": "1"}
    result = run(*args, env=env)
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    errors = [n for n, line in enumerate(lines) if line.startswith("modelreg: error: ")]
    assert len(errors) == 1 and lines.index("Traceback (most recent call last):") < errors[0], result.stderr
    assert result.stdout == ""
    plain = run(*args)
    assert plain.returncode == code and "Traceback" not in plain.stderr


# -- ls --where compares JSON values with their type --------------------------------------


@pytest.fixture
def typed(isolated_env):
    reg = modelreg.Registry.init(isolated_env)
    values = [3, "3", 3.0, True, 1, "true", ["a"], {"k": 1}, "abc", None, [True], [1]]
    for n, value in enumerate(values):
        reg.log([str(make_tree(isolated_env / f"d{n}", {"w": f"{n}"}))], name="t", metadata={"x": value})
    return reg


@pytest.mark.parametrize("value, versions", [
    ("3", [0, 2]),  # the numbers 3 and 3.0, never the string "3"
    ("3.0", [0, 2]),
    ('"3"', [1]),
    ("true", [3]),  # the boolean only: not 1, not "true"
    ("1", [4]),
    ('"true"', [5]),
    ('["a"]', [6]),
    ('{"k":1}', [7]),
    ('{"k":true}', []),
    ("abc", [8]),  # not JSON: the string
    ('"abc"', [8]),
    ("null", [9]),
    ("[true]", [10]),
    ("[1]", [11]),
    ("4", []),
])
def test_where_compares_as_json_with_type(mr, typed, value, versions):
    assert [v.version for v in typed.versions("t", where=[f"metadata.x={value}"])] == versions
    result = mr("ls", "t", "--where", f"metadata.x={value}", "--json")
    assert result.returncode == 0, result.stderr
    assert [v["version"] for v in json.loads(result.stdout)] == versions


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_where_refuses_what_metadata_refuses(mr, typed, value):
    with pytest.raises(InvalidInput):
        typed.versions("t", where=[f"metadata.x={value}"])
    assert mr("ls", "t", "--where", f"metadata.x={value}").returncode == 2


# -- stdout write errors -----------------------------------------------------------------


STDOUT_COMMANDS = [["ls"], ["ls", "m"], ["ls", "m:v0"], ["show", "m:v0"], ["history", "m"], ["ls", "--json"],
                   ["ls", "m", "--plain"], ["--help"], ["--version"], ["ls", "--help"], ["fsck"]]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", STDOUT_COMMANDS)
def test_a_full_disk_on_stdout_is_one_clean_line_and_exit_1(story, args):
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "modelreg", *args], stdout=full, stderr=subprocess.PIPE,
                                text=True)
    assert result.returncode == 1
    assert result.stderr == "modelreg: error: cannot write to standard output: No space left on device\n"


@pytest.mark.parametrize("args", [a for a in STDOUT_COMMANDS if a[0] != "--help" and "--help" not in a
                                  and a != ["--version"]])
def test_a_closed_stdout_is_one_clean_line_and_exit_1(story, args):
    result = subprocess.run(["sh", "-c", 'exec "$0" -m modelreg "$@" >&-', sys.executable, *args],
                            stderr=subprocess.PIPE, text=True)
    assert result.returncode == 1
    assert result.stderr == "modelreg: error: cannot write to standard output: Bad file descriptor\n"


@pytest.mark.parametrize("args", STDOUT_COMMANDS)
def test_a_closed_pipe_stays_a_quiet_0(story, args):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: no race
    try:
        result = subprocess.run([sys.executable, "-m", "modelreg", *args], stdout=write_end,
                                stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_write_error_after_a_change_is_reported_and_the_change_kept_whole(story):
    before = story.history("m")
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "modelreg", "alias", "m:v2", "prod", "--reason", "x"],
                                stdout=full, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 1 and "cannot write to standard output" in result.stderr
    # stdout failed after the change: it is made, recorded once, and nothing earlier changed
    after = story.history("m")
    assert after[: len(before)] == before
    assert [(e["event"], e.get("from"), e.get("to")) for e in after[len(before):]] == [("alias-moved", 1, 2)]
    assert story.show("m:prod").version == 2


# -- the program page --------------------------------------------------------------------


def test_modelreg_page_documents_143_and_the_stdout_rules():
    from modelreg.cli.manprose import PROSE

    page = PROSE["modelreg"]
    assert 143 in page["exit_status"] and "SIGTERM" in page["exit_status"][143]
    assert 143 in page["exit_status_common"]
    notes = " ".join(page["exit_status_notes"].split())
    assert "status 0" in notes and "cannot write to standard output" in notes and "status 1" in notes
    assert "MODELREG_DEBUG=1`, which adds it" in page["output"] and "exit status" in " ".join(page["output"].split())
    man = (Path(__file__).resolve().parent.parent / "man" / "modelreg.1").read_text()
    assert "143" in man
