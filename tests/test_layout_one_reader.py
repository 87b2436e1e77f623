"""One reader of the layout (issue 10, part 2): TAB offers what `ls` lists.

TAB (`cli/_complete_registry.py`) and the commands used to read the layout each their
own way and disagreed: with `MODELREG_DIR='~/reg'` TAB listed a registry `ls` said was
not there; after `rm solo:v0`, `ls` listed `solo` with 0 versions while TAB hid it.
Now `modelreg.layout` owns finding the registry, the patterns and what a live
collection is. Each test builds a registry with the real command and compares, on it,
what TAB offers for `ls <TAB>`, `pull NAME:<TAB>`, `alias --delete NAME <TAB>` and
`pull REF --file <TAB>` with what `ls --json`, `ls NAME --json` and `ls REF --json` list.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tree
from modelreg.cli import complete

SRC = Path(__file__).resolve().parents[1] / "src"
RELEASE_0_1_0 = "30aee38"


def clean_env(**extra: str) -> dict[str, str]:
    """A child's environment: this checkout's code, nothing that steers modelreg."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MODELREG_", "_MODELREG_", "_TYPER_COMPLETE", "COMP_"))}
    env["PYTHONPATH"] = str(SRC)
    env["MODELREG_LOCK_TIMEOUT"] = "10"
    env.update(extra)
    return env


def cli(cwd: Path, *args: str, env: dict | None = None, src: Path = SRC) -> subprocess.CompletedProcess:
    """modelreg as a real process (`src`: whose code runs it)."""
    env = {**(env or clean_env()), "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-m", "modelreg", *args], cwd=cwd, env=env, capture_output=True,
                          text=True)


def ok(cwd: Path, *args: str, **kw) -> str:
    result = cli(cwd, *args, **kw)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def tab(args: list[str], incomplete: str, environ: dict) -> list[str]:
    """What the fast path offers for `modelreg ARGS INCOMPLETE<TAB>` in the current directory."""
    items, _ = complete.completions(args, incomplete, environ)
    return sorted(value for value, _, _ in items)


def tab_via_entry_point(cwd: Path, line: str, env: dict, timeout: float | None = None) -> list[str]:
    """The same through the console entry point, as a shell's script asks it (bash)."""
    words = line.split()
    request = {"_MODELREG_COMPLETE": "complete_bash", "COMP_WORDS": "\n".join(words),
               "COMP_CWORD": str(len(words) - (0 if line.endswith(" ") else 1))}
    result = subprocess.run([sys.executable, "-m", "modelreg"], cwd=cwd, env={**env, **request},
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return sorted(filter(None, result.stdout.split("\n")))


def short(row: dict, entity: str = "local", project: str = "default") -> str:
    if (row["entity"], row["project"]) == (entity, project):
        return row["name"]
    if row["entity"] == entity:
        return f"{row['project']}/{row['name']}"
    return f"{row['entity']}/{row['project']}/{row['name']}"


def assert_tab_offers_what_ls_lists(cwd: Path, env: dict, environ: dict | None = None) -> list[dict]:
    """Compare TAB and `ls` on the registry found from `cwd` with `env`; the rows of `ls`.

    `environ` is what the completion request sees (default: `env`'s MODELREG_* settings).
    """
    environ = environ if environ is not None else {k: v for k, v in env.items() if k.startswith("MODELREG_")}
    rows = json.loads(ok(cwd, "ls", "--json", env=env))
    os.chdir(cwd)
    # ls <TAB>: the default project's collections, then each project's and entity's by prefix
    assert tab(["link", "x:v0"], "", environ) == sorted(short(r) for r in rows if (r["entity"], r["project"]) ==
                                                        ("local", "default") and r["kind"] == "registered")
    assert tab(["ls"], "", environ) == sorted(short(r) for r in rows if (r["entity"], r["project"]) ==
                                              ("local", "default"))
    for entity, project in {(r["entity"], r["project"]) for r in rows}:
        typed = f"{entity}/{project}/"
        assert tab(["ls"], typed, environ) == sorted(typed + r["name"] for r in rows
                                                     if (r["entity"], r["project"]) == (entity, project))
        if entity == "local":  # `P/` offers P's collections, and the projects of an entity P
            offered = tab(["ls"], f"{project}/", environ)
            assert [o for o in offered if not o.endswith("/")] == sorted(
                f"{project}/{r['name']}" for r in rows if (r["entity"], r["project"]) == (entity, project))
            assert [o for o in offered if o.endswith("/")] == sorted(
                {f"{project}/{r['project']}/" for r in rows if r["entity"] == project})
    for row in rows:
        name = short(row)
        versions = json.loads(ok(cwd, "ls", name, "--json", env=env))
        live = [v["version"] for v in versions]
        assert live == sorted(live) and len(live) == row["versions"]
        expected = [f"{name}:v{n}" for n in live] + [f"{name}:{a}" for a in row["aliases"]]
        expected += [f"{name}:latest"] if live else []
        assert tab(["pull"], f"{name}:", environ) == sorted(expected), name
        assert tab(["alias", "--delete", name], "", environ) == sorted(row["aliases"]), name
        if row["kind"] == "registered" and (row["entity"], row["project"]) == ("local", "default"):
            assert name in tab(["link", "x:v0"], "", environ)
        for number in live:
            listed = cli(cwd, "ls", f"{name}:v{number}", "--json", env=env)
            offered = tab(["pull", f"{name}:v{number}", "--file"], "", environ)
            if listed.returncode == 3:  # a dangling link: nothing to pull, nothing offered
                assert offered == [], (name, number)
            else:
                assert listed.returncode == 0, listed.stderr
                assert offered == sorted(f["path"] for f in json.loads(listed.stdout)), (name, number)
    return rows


@pytest.fixture
def files(tmp_path) -> Path:
    return make_tree(tmp_path / "files", {"a/w.bin": "a", "a/cfg/x.yaml": "x: 1", "b/w.bin": "b",
                                          "c/w.bin": "c", "d/w.bin": "d"})


def build(reg: Path, files: Path, commands: list[list[str]], **kw) -> None:
    reg.mkdir(parents=True, exist_ok=True)
    for args in commands:
        ok(reg, *[str(files / a[2:]) if a.startswith("@/") else a for a in args], **kw)


SCENARIOS = {
    "plain": [["log", "@/a", "-n", "resnet"], ["log", "@/b", "-n", "resnet"], ["log", "@/c", "-n", "bert"]],
    "entity-project": [["log", "@/a", "-n", "resnet"], ["log", "@/b", "-n", "vision/detr"],
                       ["log", "@/c", "-n", "acme/nlp/bert"], ["log", "@/d", "-n", "acme/nlp/gpt"]],
    # the case: `ls` lists solo with 0 versions, so TAB offers it too
    "a deleted version": [["log", "@/a", "-n", "solo"], ["rm", "solo:v0"],
                          ["log", "@/a", "-n", "resnet"], ["log", "@/b", "-n", "resnet"], ["rm", "resnet:v0"]],
    "rm --all": [["log", "@/a", "-n", "gone", "-a", "best"], ["log", "@/b", "-n", "gone"],
                 ["rm", "gone", "--all", "--force"], ["log", "@/c", "-n", "acme/nlp/only"],
                 ["rm", "acme/nlp/only", "--all"], ["log", "@/d", "-n", "kept"]],
    "rm --all, then logged again": [["log", "@/a", "-n", "back"], ["rm", "back", "--all"],
                                    ["log", "@/b", "-n", "back"]],
    "dangling link": [["log", "@/a", "-n", "resnet"], ["log", "@/b", "-n", "resnet"],
                      ["link", "resnet:v0", "classifier", "-a", "staging"], ["link", "resnet:v1", "classifier"],
                      ["rm", "resnet:v0", "--force"]],
    "aliases": [["log", "@/a", "-n", "resnet", "-a", "best", "-a", "Prod_2.x"], ["log", "@/b", "-n", "resnet"],
                ["alias", "resnet:v1", "production", "rc"], ["alias", "--delete", "resnet", "rc"],
                ["link", "resnet:best", "vision/clf", "-a", "staging"]],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_tab_offers_what_ls_lists(scenario, tmp_path, files):
    reg = tmp_path / "reg"
    build(reg, files, SCENARIOS[scenario])
    rows = assert_tab_offers_what_ls_lists(reg, clean_env())
    assert_liveness_agrees(reg)
    names = {short(r) for r in rows}
    # the comparison means something only if the scenario's point came through
    expect = {"a deleted version": {"solo", "resnet"}, "rm --all": {"kept"}, "rm --all, then logged again": {"back"},
              "dangling link": {"resnet", "classifier"}}.get(scenario)
    if expect is not None:
        assert names == expect
    if scenario == "rm --all":
        os.chdir(reg)
        assert tab(["ls"], "acme/", {}) == [] and tab(["pull"], "gone:", {}) == []
    if scenario == "a deleted version":
        assert [r["versions"] for r in rows if r["name"] == "solo"] == [0]
        os.chdir(reg)
        assert tab(["pull"], "so", {}) == ["solo"] and tab(["pull"], "solo:", {}) == []


def assert_liveness_agrees(reg: Path) -> None:
    """layout's quick liveness test (TAB's) gives what the full state gives, for every claim."""
    from modelreg import layout

    root = str(reg / ".modelreg")
    for claim in sorted((reg / ".modelreg" / "names").glob("*/*/*.json")):
        entity, project = claim.parent.parent.name, claim.parent.name
        name = json.loads(claim.read_text())["name"]
        full = layout.is_live_collection(layout.local_state(root, entity, project, name))
        assert layout.local_is_live(root, entity, project, name) == full, (entity, project, name)


@pytest.mark.parametrize("snapshot", ["missing", "behind", "reformatted", "torn"])
def test_a_snapshot_that_is_missing_behind_or_odd_changes_nothing(snapshot, tmp_path, files):
    """TAB reads only the head and tail of a snapshot; whatever state it is in, TAB still
    offers what `ls` lists (the records after the snapshot decide)."""
    reg = tmp_path / "reg"
    build(reg, files, [["log", "@/a", "-n", "back"], ["log", "@/a", "-n", "solo"], ["log", "@/b", "-n", "emptied"]])
    base = reg / ".modelreg" / "collections" / "local" / "default"
    early = {n: (base / n / "snapshot.json").read_bytes() for n in ("back", "solo", "emptied")}
    build(reg, files, [["rm", "back", "--all"], ["log", "@/c", "-n", "back"], ["rm", "solo:v0"],
                       ["rm", "emptied", "--all"]])
    for name, old in early.items():
        path = base / name / "snapshot.json"
        if snapshot == "missing":
            path.unlink()
        elif snapshot == "behind":
            path.write_bytes(old)
        elif snapshot == "reformatted":
            path.write_text(json.dumps(json.loads(path.read_bytes()), indent=1))
        else:
            path.write_bytes(path.read_bytes()[:-20])
    assert_liveness_agrees(reg)
    rows = assert_tab_offers_what_ls_lists(reg, clean_env())
    assert sorted((r["name"], r["versions"]) for r in rows) == [("back", 1), ("solo", 0)]


@pytest.mark.parametrize("setting", [{"MODELREG_ENTITY": "bad/entity"}, {"MODELREG_PROJECT": "-x"},
                                     {"MODELREG_PROJECT": "x" * 129}])
def test_defaults_the_commands_refuse_offer_nothing(setting, tmp_path, files):
    reg = tmp_path / "reg"
    build(reg, files, SCENARIOS["entity-project"])
    listed = cli(reg, "ls", "--json", env=clean_env(**setting))
    assert listed.returncode == 2 and listed.stdout == ""
    os.chdir(reg)
    for args, incomplete in ((["ls"], ""), (["pull"], "resnet:"), (["pull"], "acme/nlp/"),
                             (["alias", "--delete", "resnet"], "")):
        assert tab(args, incomplete, setting) == [], (args, incomplete)


@pytest.mark.parametrize("damage", ["torn last record", "missing record", "record not an object"])
def test_a_collection_ls_cannot_read_is_not_offered(damage, tmp_path, files):
    """`ls` leaves out (with a warning) a collection whose records cannot be read; TAB
    offers neither it nor its versions, and the rest as before."""
    reg = tmp_path / "reg"
    build(reg, files, [["log", "@/a", "-n", "resnet", "-a", "best"], ["log", "@/b", "-n", "resnet"],
                       ["log", "@/c", "-n", "resnet"], ["log", "@/d", "-n", "bert"]])
    changes = reg / ".modelreg/collections/local/default/resnet/changes"
    (changes.parent / "snapshot.json").unlink()  # else the snapshot covers the damage
    if damage == "torn last record":
        last = changes / "000000000002.json"
        last.write_bytes(last.read_bytes()[:-30])
    elif damage == "missing record":
        (changes / "000000000001.json").unlink()
    else:
        (changes / "000000000002.json").write_text("[2]")
    listed = cli(reg, "ls", "--json")
    assert listed.returncode == 0 and "resnet" in listed.stderr
    assert [r["name"] for r in json.loads(listed.stdout)] == ["bert"]
    assert cli(reg, "ls", "resnet", "--json").returncode == 1
    assert_tab_offers_what_ls_lists(reg, clean_env())
    os.chdir(reg)
    assert tab(["pull"], "resnet:", {}) == [] and tab(["alias", "--delete", "resnet"], "", {}) == []
    assert tab(["pull", "resnet:v0", "--file"], "", {}) == []


FIFO_LINES = ("modelreg ls ", "modelreg pull resnet:", "modelreg pull resnet:v0 --file ",
              "modelreg alias --delete resnet ")


def assert_tab_answers_with_fifos(reg: Path, fifos: list[str]) -> None:
    """TAB answers (and never blocks opening a FIFO) with each of `fifos` made a FIFO."""
    for rel in fifos:
        path = reg / ".modelreg" / rel
        assert path.is_file(), rel
        saved = path.read_bytes()
        path.unlink()
        os.mkfifo(path)
        try:
            for line in FIFO_LINES:
                try:
                    tab_via_entry_point(reg, line, clean_env(), timeout=30)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"TAB blocked on the FIFO {rel} for {line!r}")
        finally:
            path.unlink()
            path.write_bytes(saved)


def test_tab_never_blocks_on_a_fifo_in_the_registry(tmp_path, files):
    """The library reads only regular files (a FIFO would block it forever); so does TAB."""
    reg = tmp_path / "reg"
    build(reg, files, [["log", "@/a", "-n", "resnet", "-a", "best"], ["log", "@/b", "-n", "resnet"]])
    coll = "collections/local/default/resnet/"
    manifest = json.loads((reg / ".modelreg" / coll / "snapshot.json").read_text())["versions"]["0"]["manifest"]
    assert_tab_answers_with_fifos(reg, ["config.toml", "names/local/default/resnet.json", coll + "snapshot.json",
                                        coll + "changes/000000000001.json", f"{coll}manifests/{manifest}.json"])


def test_through_the_entry_point_and_the_library(tmp_path, files):
    """A real completion request agrees with `Registry.collections()` and `versions()`."""
    import modelreg

    reg = tmp_path / "reg"
    build(reg, files, SCENARIOS["a deleted version"] + [["log", "@/c", "-n", "resnet", "-a", "best"]])
    env = clean_env()
    assert tab_via_entry_point(reg, "modelreg ls ", env) == ["resnet", "solo"]
    assert tab_via_entry_point(reg, "modelreg pull resnet:", env) == [
        "resnet:best", "resnet:latest", "resnet:v1", "resnet:v2"]
    assert tab_via_entry_point(reg, "modelreg alias --delete resnet ", env) == ["best"]
    library = modelreg.Registry.open(reg)
    assert sorted(c.name for c in library.collections()) == ["resnet", "solo"]
    assert [v.version for v in library.versions("resnet")] == [1, 2]
    assert library.versions("solo") == []


def test_a_registry_named_with_a_tilde(tmp_path, files, monkeypatch):
    """MODELREG_DIR='~/reg' (quoted, so the shell left `~` alone) and `--root '~/reg'`
    name the same registry for `ls` and for TAB; a `~` path with no registry is none for both."""
    home = tmp_path / "home"
    build(home / "reg", files, SCENARIOS["plain"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    env = clean_env(HOME=str(home), MODELREG_DIR="~/reg")
    rows = assert_tab_offers_what_ls_lists(elsewhere, env)
    assert sorted(short(r) for r in rows) == ["bert", "resnet"]
    assert tab_via_entry_point(elsewhere, "modelreg pull res", env) == ["resnet"]
    plain = clean_env(HOME=str(home))
    assert json.loads(ok(elsewhere, "--root", "~/reg", "ls", "--json", env=plain)) == rows
    assert tab_via_entry_point(elsewhere, "modelreg --root ~/reg pull resnet:", plain) == [
        "resnet:latest", "resnet:v0", "resnet:v1"]
    nowhere = clean_env(HOME=str(home), MODELREG_DIR="~/nothing")
    missing = cli(elsewhere, "ls", "--json", env=nowhere)
    assert missing.returncode == 3 and missing.stdout == ""
    assert tab_via_entry_point(elsewhere, "modelreg pull ", nowhere) == []
    # `~` also names where the first `log` creates a registry
    made = cli(elsewhere, "log", str(files / "a"), "-n", "fresh", env=clean_env(HOME=str(home), MODELREG_DIR="~/new"))
    assert made.returncode == 0, made.stderr
    assert (home / "new" / ".modelreg" / "config.toml").is_file() and not (elsewhere / "~").exists()


# --- a format-1 registry, made by 0.1.0 itself --------------------------------------------


@pytest.fixture(scope="module")
def release_0_1_0(tmp_path_factory) -> Path:
    """The `src` directory of modelreg 0.1.0, checked out of this repository's history."""
    repo = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot check out 0.1.0 to build a format-1 registry")
    probe = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{RELEASE_0_1_0}^{{commit}}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"commit {RELEASE_0_1_0} (0.1.0) is not in this clone (a shallow clone?)")
    out = tmp_path_factory.mktemp("modelreg-0.1.0")
    archive = subprocess.run(["git", "-C", str(repo), "archive", RELEASE_0_1_0, "src/modelreg"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "src"


def test_a_format1_registry_made_by_0_1_0(tmp_path, files, release_0_1_0):
    """A user with an old registry still gets TAB, and it agrees with today's `ls`; after
    `upgrade` TAB reads format 2 and offers the same (the format-1 files stay in place)."""
    reg = tmp_path / "reg"
    build(reg, files, [
        ["log", "@/a", "-n", "resnet", "-a", "best"], ["log", "@/b", "-n", "resnet"], ["log", "@/c", "-n", "resnet"],
        ["alias", "resnet:v1", "production", "rc"], ["alias", "--delete", "resnet", "rc"],
        ["log", "@/b", "-n", "vision/detr"], ["log", "@/c", "-n", "acme/nlp/bert"],
        ["log", "@/a", "-n", "solo"], ["rm", "solo:v0"],
        ["log", "@/d", "-n", "gone", "-a", "x"], ["rm", "gone", "--all", "--force"],
        ["log", "@/d", "-n", "acme/cv/only"], ["rm", "acme/cv/only", "--all"],
        ["link", "resnet:v0", "classifier", "-a", "staging"], ["link", "resnet:v2", "classifier"],
        ["rm", "resnet:v0", "--force"],
    ], src=release_0_1_0)
    from modelreg import layout  # really 0.1.0's layout:

    assert layout.config_format((reg / ".modelreg" / "config.toml").read_bytes()) == 1
    assert (reg / ".modelreg/collections/local/default/resnet/versions/v2.json").is_file()
    before = assert_tab_offers_what_ls_lists(reg, clean_env())
    assert {short(r) for r in before} >= {"resnet", "solo", "classifier", "vision/detr", "acme/nlp/bert"}
    assert "gone" not in {short(r) for r in before}
    os.chdir(reg)
    assert tab(["ls"], "acme/", {}) == ["acme/nlp/"]  # acme/cv held only a collection emptied by rm --all
    assert tab_via_entry_point(reg, "modelreg pull solo:", clean_env()) == []
    assert_tab_answers_with_fifos(reg, ["config.toml", "collections/local/default/resnet/collection.json",
                                        "collections/local/default/resnet/versions/v1.json",
                                        "collections/local/default/resnet/aliases/production",
                                        "collections/local/default/solo/versions/v0.json",
                                        "collections/local/default/solo/history.jsonl"])
    ok(reg, "upgrade")
    after = assert_tab_offers_what_ls_lists(reg, clean_env())
    strip = lambda rows: [{k: v for k, v in r.items() if k != "updated"} for r in rows]  # noqa: E731
    assert strip(after) == strip(before)


# --- one declaration of each pattern ------------------------------------------------------


def test_the_layout_patterns_are_declared_only_in_layout():
    """The name, alias, version and digest-prefix patterns live in `layout.py` alone; the
    other modules use its compiled patterns."""
    patterns = ["[A-Za-z0-9][A-Za-z0-9._-]", "v([0-9]+)", "v[0-9]+", "v(0|[1-9]", "[0-9a-f]{8,64}"]
    found = []
    for path in sorted((SRC / "modelreg").rglob("*.py")):
        if path.name == "layout.py" and path.parent.name == "modelreg":
            continue
        text = path.read_text()
        found += [(path.relative_to(SRC).as_posix(), p) for p in patterns if p in text]
    assert found == []
    from modelreg import collections, layout, refs

    assert refs.NAME_RE is layout.NAME_RE and refs.ALIAS_RE is layout.ALIAS_RE
    assert refs.VERSION_RE is layout.VERSION_RE and refs.DIGEST_PREFIX_RE is layout.DIGEST_PREFIX_RE
    assert collections.VERSION_FILE is layout.VERSION_FILE_RE and collections.ALIAS_LINE is layout.ALIAS_LINE_RE
    assert re.fullmatch(layout.NAME_PATTERN, "a" * 128) and not re.fullmatch(layout.NAME_PATTERN, "a" * 129)


def test_tab_imports_only_the_layout_of_the_library(tmp_path, files):
    """TAB stays as cheap as the interpreter: no typer, rich or dataclasses, and of
    modelreg only the layout and the completion fast path."""
    reg = tmp_path / "reg"
    build(reg, files, SCENARIOS["plain"])
    fast_path = {"modelreg", "modelreg.layout", "modelreg.cli", "modelreg.cli.entry", "modelreg.cli.complete",
                 "modelreg.cli.candidates", "modelreg.cli.shellscripts", "modelreg.cli._cmdtable",
                 "modelreg.cli._complete_registry"}
    probe = ("import json, sys\n"
             "from modelreg.cli.entry import run\n"
             "code = run([])\n"
             "print(json.dumps([code, sorted(m for m in sys.modules if m.split('.')[0] in "
             "('modelreg', 'typer', 'rich', 'click', 'dataclasses', 'blake3'))]))\n")
    for line in ("modelreg ls ", "modelreg pull resnet:", "modelreg pull resnet:v0 --file ",
                 "modelreg alias --delete resnet "):
        words = line.split()
        env = clean_env(_MODELREG_COMPLETE="complete_bash", COMP_WORDS="\n".join(words), COMP_CWORD=str(len(words)))
        result = subprocess.run([sys.executable, "-c", probe], cwd=reg, env=env, capture_output=True, text=True)
        code, imported = json.loads(result.stdout.splitlines()[-1])
        assert code == 0 and set(imported) <= fast_path, (line, imported, result.stderr)
