"""Tab completion (issues 5 and 6).

The fast path (`modelreg.cli.complete`, standard library only) must answer exactly as
Typer would, from a command table kept in sync with the app; the committed scripts
must match their generator; a TAB must not import typer or rich; and real shells,
driven through tmux, must complete registry contents, `resnet:` included.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelreg.cli import complete

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
COMPLETIONS = REPO / "completions"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for a child process: this checkout first on the path, none of
    the variables that steer modelreg or a completion request."""
    steering = ("MODELREG_", "_MODELREG_", "_TYPER_COMPLETE", "COMP_", "COLUMNS", "TERMINAL_WIDTH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(steering)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["HOME"] = str(home)
    env.update(extra)
    return env


def modelreg(cwd: Path, env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "modelreg", *args], cwd=cwd, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """A registry made with the real CLI; the directory holding `.modelreg`.

    resnet v0, v1 (alias best), v2 deleted; classifier (registered) v0 → resnet:v1 with
    staging and production; efficientnet; vision/detr; acme/nlp/bert; gone, all deleted.
    """
    base = tmp_path_factory.mktemp("completion")
    home = base / "home"
    home.mkdir()
    root = base / "reg"
    files = {
        "ck0/a.txt": "a", "ck0/sub/b.bin": "b",
        "ck1/model.pt": "weights", "ck1/config/train.yaml": "lr: 1",
        "ck2/model.pt": "other", "ck3/w.bin": "w",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "ckpt-notes.txt").write_text("a file for the shell's own completion")
    env = clean_env(home)
    for args in (
        ["init"],
        ["log", "ck0", "-n", "resnet"],
        ["log", "ck1", "-n", "resnet", "-a", "best"],
        ["log", "ck2", "-n", "resnet"],
        ["rm", "resnet:v2"],
        ["link", "resnet:best", "classifier", "-a", "staging", "-a", "production"],
        ["log", "ck3", "-n", "efficientnet"],
        ["log", "ck3", "-n", "vision/detr"],
        ["log", "ck3", "-n", "acme/nlp/bert"],
        ["log", "ck2", "-n", "gone"],
        ["rm", "gone", "--all", "--force"],
    ):
        modelreg(root, env, *args)
    return root


@pytest.fixture
def in_registry(registry, monkeypatch) -> Path:
    monkeypatch.chdir(registry)
    return registry


# --- generated files in sync ---------------------------------------------------------------


def test_command_table_is_in_sync_with_the_app():
    from modelreg.cli import completers

    expected = completers.render_table(completers.build_table())
    assert completers.TABLE_PATH.read_text() == expected, (
        "the command table is stale: run `python -m modelreg.cli.complete --generate`")


@pytest.mark.parametrize("shell", sorted(complete.SCRIPTS))
def test_committed_scripts_match_the_generator(shell):
    name = complete.SCRIPTS[shell][0]
    assert (COMPLETIONS / name).read_text() == complete.script(shell), (
        f"completions/{name} is stale: run `python -m modelreg.cli.complete --write-scripts`")


def test_check_passes_on_this_checkout(tmp_path):
    result = subprocess.run([sys.executable, "-m", "modelreg.cli.complete", "--check"],
                            env=clean_env(tmp_path), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _commands(node: dict, path: tuple = ()):
    yield path, node
    for sub in node.get("commands", ()):
        yield from _commands(sub, (*path, sub["name"]))


def _param(path: tuple, *, opt: str | None = None, index: int | None = None) -> dict:
    from modelreg.cli._cmdtable import TABLE

    node = dict(_commands(TABLE))[path]
    if opt is not None:
        return next(p for p in node["params"] if p["param"] == "option" and opt in p["opts"])
    return [p for p in node["params"] if p["param"] == "argument"][index]


@pytest.mark.parametrize("where, kind", [
    ((("pull",), {"index": 0}), "ref"),
    ((("show",), {"index": 0}), "ref"),
    ((("diff",), {"index": 1}), "ref"),
    ((("rm",), {"index": 0}), "ref"),
    ((("link",), {"index": 0}), "ref"),
    ((("link",), {"index": 1}), "registered"),
    ((("alias",), {"index": 1}), "alias"),
    ((("pull",), {"opt": "--file"}), "version-file"),
    ((("log",), {"opt": "--name"}), "collection"),
    ((("log",), {"opt": "--input"}), "ref"),
    ((("config", "get"), {"index": 0}), "config-key"),
    ((("log",), {"index": 0}), "path"),
    (((), {"opt": "--root"}), "path"),
])
def test_table_knows_what_each_parameter_completes(where, kind):
    path, how = where
    assert (_param(path, **how)["complete"] or {}).get("kind") == kind


def test_every_completion_in_the_table_is_answerable():
    from modelreg.cli._cmdtable import TABLE

    for path, node in _commands(TABLE):
        for p in node["params"]:
            spec = p["complete"] or {}
            known = (None, "file", "dir", *complete.KINDS)
            assert "choices" in spec or spec.get("kind") in known, (path, p)


# --- the fast path answers as Typer does -----------------------------------------------------

# Many requests in one process, each answered by the fast path and by the app itself
# (what entry.run does with MODELREG_COMPLETE_VIA_TYPER=1, minus its error mapping,
# which test_entry_point_serves_both_paths covers).
RUNNER = textwrap.dedent("""
    import contextlib, io, json, os, sys
    import typer.main
    from modelreg.cli import complete
    from modelreg.cli.app import app

    cases = json.load(sys.stdin)
    cli = typer.main.get_command(app)
    base = dict(os.environ)
    results = []
    for case in cases:
        answers = {}
        for path in ("fast", "typer"):
            os.environ.clear()
            os.environ.update(base, **case["env"])
            os.chdir(case["cwd"])
            if path == "typer":
                os.environ["MODELREG_COMPLETE_VIA_TYPER"] = "1"
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                try:
                    if path == "fast":
                        code = complete.serve(os.environ)
                    else:
                        cli.main(args=[], prog_name="modelreg")
                except SystemExit as exc:
                    code = exc.code
            answers[path] = [buffer.getvalue(), code or 0]
        results.append(answers)
    print(json.dumps(results))
""")


def _shell_requests(line: str) -> dict[str, dict[str, str]]:
    """The environment each shell's script sets for the line typed so far."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    return {
        "bash": {"_MODELREG_COMPLETE": "complete_bash", "COMP_WORDS": "\n".join(words),
                 "COMP_CWORD": str(cword)},
        "zsh": {"_MODELREG_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": line},
        "fish-get": {"_MODELREG_COMPLETE": "complete_fish", "_TYPER_COMPLETE_ARGS": line,
                     "_TYPER_COMPLETE_FISH_ACTION": "get-args"},
        "fish-is": {"_MODELREG_COMPLETE": "complete_fish", "_TYPER_COMPLETE_ARGS": line,
                    "_TYPER_COMPLETE_FISH_ACTION": "is-args"},
    }


CURATED = [
    "modelreg ", "modelreg p", "modelreg -", "modelreg --", "modelreg --root ",
    "modelreg --root=", "modelreg bogus re", "modelreg --bogus pull ",
    "modelreg pull ", "modelreg pull re", "modelreg pull resnet:", "modelreg pull resnet:b",
    "modelreg pull resnet:v", "modelreg pull classifier:", "modelreg pull vision/",
    "modelreg pull acme/", "modelreg pull acme/nlp/", "modelreg pull local/",
    "modelreg pull gone:", "modelreg pull nothing:", "modelreg pull 're",
    "modelreg pull resnet --file ", "modelreg pull resnet:v0 --file s",
    "modelreg pull classifier:staging --file ", "modelreg pull --file ",
    "modelreg pull resnet --file=c", "modelreg pull -o out resnet:best --file ",
    "modelreg pull resnet --file a --file ", "modelreg pull resnet --mode ",
    "modelreg pull resnet --force --", "modelreg pull resnet --no-verify --",
    "modelreg pull resnet -- -", "modelreg pull resnet extra ",
    "modelreg link resnet:best ", "modelreg link resnet:best c", "modelreg link ",
    "modelreg alias --delete resnet ", "modelreg alias classifier:v0 ",
    "modelreg alias --delete classifier p", "modelreg alias resnet:v1 best ",
    "modelreg config ", "modelreg config get ", "modelreg config set d",
    "modelreg config unset pull.", "modelreg config bogus ",
    "modelreg log -n ", "modelreg log ckpt -n re", "modelreg log --input res",
    "modelreg log ", "modelreg log -qn ", "modelreg ls ", "modelreg ls --kind ",
    "modelreg show resnet:l", "modelreg diff resnet:v0 res", "modelreg history classifier:",
    "modelreg rm resnet:v", "modelreg rm -q --all re", "modelreg -h pull re",
]


def _generated_lines() -> list[str]:
    """Every command, its options and each option's value, read off the table."""
    from modelreg.cli._cmdtable import TABLE

    lines = []
    for path, node in _commands(TABLE):
        prefix = " ".join(("modelreg", *path))
        lines += [f"{prefix} ", f"{prefix} -", f"{prefix} --"]
        for p in node["params"]:
            if p["param"] == "option" and p["action"] in ("store", "append"):
                lines.append(f"{prefix} {p['opts'][-1]} ")
    return lines


def _items(text: str) -> list[str]:
    """An answer's candidates, sorted: Click builds the help option's names from a set,
    so their order changes from run to run (and shells sort candidates anyway)."""
    m = re.fullmatch(r"_arguments '\*: :\(\((.*)\)\)'\n", text, re.S)
    if m:  # zsh: one "value":"help" per candidate, help possibly wrapped onto more lines
        return ["zsh", *sorted(re.split(r'\n(?=")', m.group(1)))]
    return sorted(text.split("\n"))


def test_fast_answers_equal_typers(registry, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cases, labels = [], []
    for line in dict.fromkeys(CURATED + _generated_lines()):
        for shell, env in _shell_requests(line).items():
            cases.append({"env": env, "cwd": str(registry)})
            labels.append((line, shell))
    extra = [
        ("modelreg pull ", {"MODELREG_PROJECT": "vision"}, registry),
        ("modelreg pull ", {"MODELREG_DIR": str(registry)}, elsewhere),
        (f"modelreg --root {registry} pull resnet:", {}, elsewhere),
        (f"modelreg --root={registry / '.modelreg'} alias --delete resnet ", {}, elsewhere),
        ("modelreg pull ", {}, elsewhere),
        ("modelreg -", {"COLUMNS": "30"}, registry),
    ]
    for line, env, cwd in extra:
        for shell, request in _shell_requests(line).items():
            cases.append({"env": {**request, **env}, "cwd": str(cwd)})
            labels.append((line, shell, *sorted(env.items())))
    result = subprocess.run(
        [sys.executable, "-c", RUNNER], input=json.dumps(cases), capture_output=True, text=True,
        env=clean_env(tmp_path, COLUMNS="60", MODELREG_DEBUG="1"), stdin=None, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.splitlines()[-1])
    wrong = []
    for label, answer in zip(labels, answers):
        fast, typer = answer["fast"], answer["typer"]
        if fast[1] is None:
            wrong.append((label, "the fast path declined", typer))
        elif (_items(fast[0]), fast[1]) != (_items(typer[0]), typer[1]):
            wrong.append((label, fast, typer))
    assert not wrong, "\n".join(map(repr, wrong))
    # the matrix means something only if registry contents came through
    by_label = dict(zip(labels, answers))
    assert "resnet\\\\:best" in by_label[("modelreg pull resnet:", "zsh")]["fast"][0]
    assert "sub/b.bin" in by_label[("modelreg pull resnet:v0 --file s", "bash")]["fast"][0]


def test_entry_point_serves_both_paths(registry, tmp_path):
    """Through the console entry point as a real process: fast, and Typer on request."""
    request = _shell_requests("modelreg pull resnet:")["zsh"]
    env = clean_env(tmp_path, **request)
    entry = [sys.executable, "-m", "modelreg"]
    fast = subprocess.run(entry, cwd=registry, env=env, capture_output=True, text=True)
    typer = subprocess.run(entry, cwd=registry, env={**env, "MODELREG_COMPLETE_VIA_TYPER": "1"},
                           capture_output=True, text=True)
    assert fast.returncode == typer.returncode == 0, (fast.stderr, typer.stderr)
    assert _items(fast.stdout) == _items(typer.stdout)
    for value in ("v0", "v1", "best", "latest"):
        assert f'"resnet\\\\:{value}"' in fast.stdout


def test_a_completion_request_imports_neither_typer_nor_rich(registry, tmp_path):
    """Nor dataclasses, nor any of the library but the layout (issue 10)."""
    probe = textwrap.dedent("""
        import json, sys
        from modelreg.cli.entry import run
        code = run([])
        heavy = ("typer", "rich", "click", "blake3", "dataclasses", "modelreg.registry", "modelreg.cli.app")
        fast = ("modelreg", "modelreg.layout", "modelreg.cli", "modelreg.cli.entry", "modelreg.cli.complete",
                "modelreg.cli.candidates", "modelreg.cli.shellscripts", "modelreg.cli._cmdtable",
                "modelreg.cli._complete_registry")
        library = [m for m in sys.modules if m.startswith("modelreg") and m not in fast]
        print(json.dumps([code, [m for m in heavy if m in sys.modules] + library]))
    """)
    for request in _shell_requests("modelreg pull re").values():
        result = subprocess.run([sys.executable, "-c", probe], cwd=registry, capture_output=True,
                                text=True, env=clean_env(tmp_path, **request))
        code, imported = json.loads(result.stdout.splitlines()[-1])
        assert code in (0, 1) and imported == [], (request, result.stdout, result.stderr)


# --- the fast path on its own -----------------------------------------------------------------


def test_serve_leaves_other_requests_to_typer(capsys):
    assert complete.serve({}) is None
    assert complete.serve({"_MODELREG_COMPLETE": "complete_powershell"}) is None
    via = {"_MODELREG_COMPLETE": "complete_zsh", "MODELREG_COMPLETE_VIA_TYPER": "1"}
    assert complete.serve(via) is None
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("shell", sorted(complete.SCRIPTS))
def test_source_request_prints_the_committed_script(shell, capsys):
    assert complete.serve({"_MODELREG_COMPLETE": f"source_{shell}"}) == 0
    assert capsys.readouterr().out == (COMPLETIONS / complete.SCRIPTS[shell][0]).read_text()


def test_our_bash_protocol_marks_where_files_are_expected(in_registry):
    def ask(line):
        words = line.split()
        env = {"_MODELREG_COMPLETE": "complete_bash", "_MODELREG_COMPLETE_TYPED": "1",
               "COMP_WORDS": "\n".join(words), "COMP_CWORD": str(len(words))}
        return complete.answer("bash", env)[0].split()

    assert ask("modelreg log ") == ["file,"]
    assert ask("modelreg pull nothing-like-it") == []  # a ref never falls back to files
    assert ask("modelreg pull ") == ["plain,classifier", "plain,efficientnet", "plain,resnet"]


@pytest.mark.parametrize("kind, incomplete, ref, expected", [
    ("ref", "", None, ["classifier", "efficientnet", "resnet"]),
    ("ref", "resnet:", None, ["resnet:v0", "resnet:v1", "resnet:best", "resnet:latest"]),
    ("ref", "classifier:", None, ["classifier:v0", "classifier:latest", "classifier:production",
                                  "classifier:staging"]),
    ("ref", "gone:", None, []),
    ("ref", "vision/", None, ["vision/detr"]),
    ("ref", "acme/", None, ["acme/nlp/"]),
    ("ref", "acme/nlp/", None, ["acme/nlp/bert"]),
    ("collection", "resnet:", None, []),
    ("registered", "", None, ["classifier"]),
    ("alias", "", "resnet:v0", ["best"]),
    ("alias", "", "classifier", ["production", "staging"]),
    ("alias", "", None, []),
    ("version-file", "", "resnet", ["config/train.yaml", "model.pt"]),
    ("version-file", "", "resnet:v0", ["a.txt", "sub/b.bin"]),
    ("version-file", "", "classifier:production", ["config/train.yaml", "model.pt"]),
    ("version-file", "", "resnet:v2", []),
    ("version-file", "", "nothing", []),
    ("config-key", "", None, list(complete.CONFIG_KEYS)),
    ("path", "", None, []),
])
def test_provide(in_registry, kind, incomplete, ref, expected):
    assert complete.provide(kind, incomplete, ref=ref, environ={}) == expected


def test_provide_resolves_a_digest_prefix(in_registry, tmp_path):
    shown = modelreg(in_registry, clean_env(tmp_path), "show", "resnet:v0", "--json")
    digest = json.loads(shown)["digest"]
    assert complete.provide("version-file", "", ref=f"resnet:{digest[:10]}", environ={}) == [
        "a.txt", "sub/b.bin"]


def test_provide_finds_the_registry_and_the_defaults(registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert complete.provide("ref", "", environ={}) == []
    assert complete.provide("ref", "", root=str(registry), environ={})[-1] == "resnet"
    assert complete.provide("ref", "", root=str(registry / ".modelreg"), environ={})[-1] == "resnet"
    env = {"MODELREG_DIR": str(registry), "MODELREG_ENTITY": "acme", "MODELREG_PROJECT": "nlp"}
    assert complete.provide("ref", "", environ=env) == ["bert"]
    copy = tmp_path / "copy"
    shutil.copytree(registry / ".modelreg", copy / ".modelreg")
    modelreg(copy, clean_env(tmp_path), "config", "set", "defaults.project", "vision")
    assert complete.provide("ref", "", root=str(copy), environ={}) == ["detr"]


@pytest.mark.parametrize("width", [1, 7, 20, 60])
def test_help_is_wrapped_as_rich_wraps_it(width, monkeypatch):
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from typer import rich_utils

    words = st.text(alphabet="abcdefghij-.,", min_size=1, max_size=30)
    gaps = st.sampled_from([" ", "  ", "\n", " \n "])

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(words, gaps), min_size=1, max_size=12))
    def check(pieces):
        text = "".join(w + g for w, g in pieces).strip()
        monkeypatch.setattr(rich_utils, "MAX_WIDTH", width)
        assert complete._wrap(text, width) == rich_utils.rich_render_text(text)

    check()


# --- real shells ------------------------------------------------------------------------------


def _modelreg_bin(tmp_path: Path) -> Path:
    """A directory with `modelreg` in it: the venv's console script, else a stand-in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    installed = Path(sys.executable).parent / "modelreg"
    target = bin_dir / "modelreg"
    if installed.exists():
        target.symlink_to(installed)
    else:
        target.write_text(f"#!{sys.executable}\nimport sys\nfrom modelreg.cli.entry import main\n"
                          "sys.exit(main())\n")
        target.chmod(0o755)
    return bin_dir


class Pane:
    """An interactive shell in a detached tmux session: type keys, read the screen."""

    def __init__(self, tmp_path: Path, command: list[str], cwd: Path, env: dict):
        self.socket = str(tmp_path / "tmux")
        self.tmux = [shutil.which("tmux"), "-S", self.socket, "-f", "/dev/null"]
        subprocess.run([*self.tmux, "new-session", "-d", "-x", "160", "-y", "40", "-c", str(cwd),
                        *command], env=env, check=True)

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", *keys], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p"], check=True, capture_output=True,
                              text=True).stdout

    def line(self) -> str:
        """The line the cursor is on, up to the cursor (tmux trims trailing blanks)."""
        where = subprocess.run([*self.tmux, "display-message", "-p", "#{cursor_x} #{cursor_y}"],
                               check=True, capture_output=True, text=True).stdout
        x, y = map(int, where.split())
        rows = self.screen().split("\n")
        return (rows[y] if y < len(rows) else "").ljust(x)[:x]

    def wait(self, pattern: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if re.search(pattern, screen, re.M):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} on the screen:\n{screen}")
            time.sleep(0.1)

    def wait_line(self, expected: str, timeout: float = 15) -> None:
        """Wait until the line up to the cursor reads `expected` (trailing space included)."""
        deadline = time.monotonic() + timeout
        while self.line() != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"line {self.line()!r}, not {expected!r}:\n{self.screen()}")
            time.sleep(0.1)

    def fresh_line(self, prompt: str) -> None:
        self.keys("C-u", "C-l")
        self.wait(rf"\A{re.escape(prompt)}\s*\Z")
        self.wait_line(prompt + " ")

    def type(self, text: str, *keys: str, settle: float = 0.6) -> None:
        self.keys("-l", text)
        for key in keys:
            self.keys(key)
            time.sleep(settle)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.fixture
def shell(registry, tmp_path):
    """Start a shell under tmux in the registry's directory, with `modelreg` on PATH."""
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    panes = []
    path = os.pathsep.join([str(_modelreg_bin(tmp_path)), "/usr/local/bin", "/usr/bin", "/bin"])

    home = tmp_path / "shell-home"
    home.mkdir()

    def start(command: list[str], **env: str) -> Pane:
        pane = Pane(tmp_path, command, registry, clean_env(home, PATH=path, TERM="xterm", **env))
        panes.append(pane)
        return pane

    yield start
    for pane in panes:
        pane.close()


def test_real_bash_completes_names_and_versions_after_the_colon(shell, tmp_path):
    rc = tmp_path / "bashrc"
    rc.write_text(f"PS1='$ '\nsource {COMPLETIONS / 'modelreg.bash'}\n")
    pane = shell(["bash", "--noprofile", "--rcfile", str(rc), "-i"])
    pane.wait(r"^\$")

    pane.fresh_line("$")
    pane.type("modelreg pull re", "Tab")
    pane.wait_line("$ modelreg pull resnet ")

    # bash splits "resnet:" at the colon; the listing shows what follows it, as git's does
    pane.fresh_line("$")
    pane.type("modelreg pull resnet:", "Tab", "Tab")
    screen = pane.wait(r"^best\s+latest\s+v0\s+v1\s*$")
    assert "v2" not in screen and "resnet:resnet" not in screen
    pane.wait_line("$ modelreg pull resnet:")

    pane.fresh_line("$")
    pane.type("modelreg pull resnet:b", "Tab")
    pane.wait_line("$ modelreg pull resnet:best ")

    pane.fresh_line("$")
    pane.type("modelreg --root=. pull classifier:st", "Tab")
    pane.wait_line("$ modelreg --root=. pull classifier:staging ")

    pane.fresh_line("$")
    pane.type("modelreg pull resnet:v0 --file s", "Tab")
    pane.wait_line("$ modelreg pull resnet:v0 --file sub/b.bin ")

    # file names where a path is expected, and only there
    pane.fresh_line("$")
    pane.type("modelreg log ckpt-", "Tab")
    pane.wait_line("$ modelreg log ckpt-notes.txt ")
    pane.fresh_line("$")
    pane.type("modelreg pull ckpt-", "Tab", "Tab")
    assert pane.line() == "$ modelreg pull ckpt-" and "notes" not in pane.screen(), pane.screen()


def test_real_zsh_completes_versions_after_the_colon(shell, tmp_path):
    if not shutil.which("zsh"):
        pytest.skip("zsh is not installed")
    zdot = tmp_path / "zdot"
    zdot.mkdir()
    (zdot / ".zshrc").write_text(
        f"PS1='%% '\nfpath=({COMPLETIONS} $fpath)\nautoload -Uz compinit && compinit -u -D\n")
    pane = shell(["zsh", "-i"], ZDOTDIR=str(zdot))
    pane.wait(r"^%")

    pane.fresh_line("%")
    pane.type("modelreg pull re", "Tab")
    pane.wait_line("% modelreg pull resnet ")

    pane.fresh_line("%")
    pane.type("modelreg pull resnet:", "Tab")
    pane.wait(r"resnet:best\s+resnet:latest\s+resnet:v0\s+resnet:v1")


def test_real_fish_completes_versions_after_the_colon(shell, tmp_path):
    if not shutil.which("fish"):
        pytest.skip("fish is not installed")
    config = tmp_path / "config" / "fish"
    config.mkdir(parents=True)
    (config / "config.fish").write_text(
        "function fish_prompt; echo -n '> '; end\nfunction fish_greeting; end\n"
        f"source {COMPLETIONS / 'modelreg.fish'}\n")
    pane = shell(["fish", "-i"], XDG_CONFIG_HOME=str(tmp_path / "config"))
    pane.wait(r"^>")

    pane.fresh_line(">")
    pane.type("modelreg pull re", "Tab", settle=1.0)
    pane.wait_line("> modelreg pull resnet ")

    pane.fresh_line(">")
    pane.type("modelreg pull resnet:", "Tab", settle=1.0)
    pane.wait(r"resnet:best\s+resnet:latest\s+resnet:v0\s+resnet:v1")
