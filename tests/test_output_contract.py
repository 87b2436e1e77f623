"""One output contract: every command's output in every mode, pinned; records declare
their JSON keys and --plain columns once; the man pages list them from that declaration;
no import cycle among modelreg's modules; Typer's private API in one module."""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import sys
from pathlib import Path

import pytest

from conftest import make_tree

SRC = Path(__file__).resolve().parent.parent / "src" / "modelreg"
GOLDEN = Path(__file__).resolve().parent / "golden" / "output_contract.txt"
UPDATE = os.environ.get("MODELREG_UPDATE_GOLDEN") == "1"

MODES = ((), ("--json",), ("--plain",), ("-q",))

# Every command and form that reports something, on the registry `_story` builds.
FORMS = [
    ("init",),
    ("ls",),
    ("ls", "vision/"),
    ("ls", "--kind", "registered"),
    ("ls", "ckpt"),
    ("ls", "ckpt", "--sort", "-metadata.epoch"),
    ("ls", "classifier"),
    ("ls", "ckpt:v1"),
    ("ls", "empty-project/"),
    ("show", "ckpt:best"),
    ("show", "classifier:v0"),
    ("show", "classifier:v1"),
    ("diff", "ckpt:v0", "ckpt:v2"),
    ("diff", "ckpt:v1", "ckpt:v1"),
    ("history", "ckpt"),
    ("history", "gone"),
    ("history", "classifier:production"),
    ("config", "get", "aliases.protected"),
    ("config", "get", "pull.mode"),
    ("config", "list"),
    ("fsck",),
    ("gc", "--dry-run", "--grace", "0"),
    ("upgrade",),
]
# Forms that change the registry: each runs once per mode on a fresh copy of the story.
WRITES = [
    ("log", "ckpt2", "-n", "ckpt", "-a", "best"),
    ("log", "ckpt2", "-n", "fresh", "-m", "k=1"),
    ("link", "ckpt:v2", "classifier", "-a", "staging"),
    ("link", "ckpt:v1", "classifier"),
    ("alias", "ckpt:v1", "candidate", "best"),
    ("alias", "--delete", "classifier", "staging"),
    ("pull", "ckpt:v1", "-o", "out"),
    ("rm", "vision/resnet", "--all"),
    ("rm", "ckpt:v1", "--force", "--reason", "superseded"),
    ("gc", "--grace", "0"),
]


def _story(mr, base: Path) -> None:
    make_tree(base / "ckpt", {"model.bin": b"\x00weights" * 50, "config.json": '{"layers": 3}\n',
                              "sub/notes.txt": "tab\there\n", "bin/run.sh": "#!/bin/sh\n"},
              executable=("bin/run.sh",))
    make_tree(base / "ckpt2", {"model.bin": b"other weights"})
    steps = [
        ("init",),
        ("log", "ckpt", "-m", "epoch=1", "-d", "first run"),
        ("log", "ckpt", "-a", "dup"),  # unchanged content: no new version
    ]
    for step in steps:
        assert mr(*step).returncode == 0, step
    (base / "ckpt" / "model.bin").write_bytes(b"better")
    (base / "ckpt" / "extra.txt").write_text("x")
    for step in [
        ("log", "ckpt", "-a", "best", "-m", "epoch=2", "-m", 'tags=["a","b"]', "--input", "ckpt:v0",
         "--run", "run-7"),
        ("log", "ckpt2", "-n", "vision/resnet"),
        ("log", "ckpt2", "-n", "ckpt", "-m", "epoch=3", "-m", "lr=0.1"),
        ("log", "ckpt2", "-n", "gone"),
        ("link", "ckpt:best", "classifier", "-a", "staging", "-d", "the candidate"),
        ("link", "gone:v0", "classifier"),
        ("alias", "classifier:v0", "production", "--reason", "beats baseline"),
        ("rm", "gone", "--all", "--force"),  # classifier:v1 dangles
    ]:
        assert mr(*step).returncode == 0, step


def _normalize(text: str, base: Path) -> str:
    text = text.replace(str(base), "<BASE>")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", "<TIME>", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<TIME-HUMAN>", text)
    # A panel is as wide as its longest line, which holds the (varying) temp path: its
    # padding and rules are not part of the contract, the cells are.
    text = re.sub(r" +│$", " │", text, flags=re.M)
    text = re.sub(r"─{3,}", "───", text)
    return text


def _record(mr, base: Path, args) -> str:
    result = mr(*args)
    parts = [f"$ modelreg {' '.join(args)}", f"[exit {result.returncode}]"]
    if result.stdout:
        parts += ["[stdout]", result.stdout.rstrip("\n")]
    if result.stderr:
        parts += ["[stderr]", result.stderr.rstrip("\n")]
    return _normalize("\n".join(parts), base)


@pytest.fixture
def story(mr, isolated_env, monkeypatch):
    # Producer info ends up in `show`: pin what differs between machines and runs.
    monkeypatch.setattr(socket, "gethostname", lambda: "host")
    monkeypatch.setenv("USER", "tester")
    monkeypatch.setenv("LOGNAME", "tester")
    monkeypatch.setattr(sys, "argv", ["modelreg"])
    _story(mr, isolated_env)
    return isolated_env


def test_every_form_in_every_mode_is_unchanged(mr, story, monkeypatch):
    import shutil

    records = []
    for form in FORMS:
        for mode in MODES:
            records.append(_record(mr, story, (*form, *mode)))
    pristine = story.parent / "pristine"
    shutil.copytree(story, pristine, symlinks=True)
    for form in WRITES:
        for mode in MODES:
            shutil.rmtree(story)
            shutil.copytree(pristine, story, symlinks=True)
            records.append(_record(mr, story, (*form, *mode)))
    text = "\n\n".join(records) + "\n"
    if UPDATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "output changed; MODELREG_UPDATE_GOLDEN=1 rewrites tests/golden/"


# -- imports: no cycle among modelreg's modules; Typer's private API in one module ---------


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """modelreg module -> the modelreg modules it imports, at any level (functions and
    `if __name__ == "__main__"` blocks included)."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # `from . import x` imports the module x when there is one, else a name of `.`
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in files and t != name}
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_modelreg_modules():
    graph = _import_graph()
    assert "modelreg.cli.completers" in graph["modelreg.cli.complete"]  # function-level imports count
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle)


PRIVATE_MODULE = SRC / "cli" / "_typer_private.py"
PRIVATE_API = re.compile(r"typer\._|\b_click\b|_custom_shell_complete|_completion_classes|rich_utils"
                         r"|PacifyFlushWrapper|type_descriptor")


def test_typer_private_api_is_used_in_one_module_only():
    offenders = [f"{p.relative_to(SRC.parent)}:{n}: {line.strip()}"
                 for p in sorted(SRC.rglob("*.py")) if p != PRIVATE_MODULE
                 for n, line in enumerate(p.read_text().splitlines(), 1) if PRIVATE_API.search(line)]
    assert not offenders, "Typer's private API outside cli/_typer_private.py:\n" + "\n".join(offenders)
    assert PRIVATE_API.search(PRIVATE_MODULE.read_text())


# -- each output form is declared once, and everything agrees with the declaration ---------


def _declared(form, record) -> list[str]:
    return [f.name for f in form.key_fields() if f.when is None or f.when(record)]


@pytest.fixture
def library_story(mr, story):
    import modelreg

    return modelreg.Registry.open(story)


def test_every_records_to_json_has_exactly_the_declared_keys(library_story, story):
    from modelreg import records as forms

    reg = library_story
    logged = reg.log(str(make_tree(story / "fresh", {"only.bin": "only here"})), metadata={"k": 1})
    linked = reg.link("ckpt:v0", "classifier")
    checks = [(forms.LOG, logged), (forms.LINK, linked), (forms.ALIAS, reg.alias("ckpt:v0", ["candidate"])),
              (forms.PULL, reg.pull("ckpt:v1", str(story / "out"))), (forms.DIFF, reg.diff("ckpt:v0", "ckpt:v2"))]
    checks += [(forms.SHOW, reg.show(ref)) for ref in ("ckpt:v1", "classifier:v0", "classifier:v1")]
    checks += [(forms.VERSIONS, v) for name in ("ckpt", "classifier") for v in reg.versions(name)]
    checks += [(forms.COLLECTIONS, c) for c in reg.collections()]
    checks += [(forms.FILE, f) for f in reg.files("ckpt:v1")]  # manifest.FileEntry
    checks += [(forms.DELETED, d) for d in reg.rm("fresh", all=True)]
    fsck, gc = reg.fsck(), reg.gc(grace="0")
    checks += [(forms.FSCK, fsck), (forms.GC, gc)]  # maintenance's results
    checks += [(forms.LEFTOVER, x) for x in (*fsck.reclaimable, *gc.removed)]
    assert gc.removed, "the story leaves something for gc, so Leftover is checked"
    assert any(v.kind == "registered" for _, v in checks if hasattr(v, "kind"))
    for form, record in checks:
        document = record.summary_json() if form is forms.VERSIONS else record.to_json()
        assert list(document) == _declared(form, record), (form.name, type(record).__name__)
        assert form.json(record) == document, form.name
    from modelreg.maintenance import Problem

    problem = Problem("blob", "objects/ab/cd", "damaged")
    assert list(problem.to_json()) == _declared(forms.PROBLEM, problem)


def test_history_events_hold_only_declared_keys(library_story):
    from modelreg import records as forms

    declared = {f.name for f in forms.HISTORY.key_fields()}
    events = [e for name in ("ckpt", "classifier", "gone") for e in library_story.history(name)]
    assert {"logged", "linked", "alias-set", "deleted", "collection-deleted"} <= {e["event"] for e in events}
    for event in events:
        assert set(event) <= declared, event
        assert set(forms.HISTORY.contract_keys()) <= set(event), event


# (form, command line, whether the document is a list) on the story's registry
CLI_FORMS = [
    ("ls", ("ls",)), ("ls NAME", ("ls", "ckpt")), ("ls NAME", ("ls", "classifier")), ("ls REF", ("ls", "ckpt:v1")),
    ("show", ("show", "ckpt:v1")), ("show", ("show", "classifier:v1")), ("diff", ("diff", "ckpt:v0", "ckpt:v2")),
    ("history", ("history", "ckpt")), ("config get", ("config", "get", "pull.mode")),
    ("config list", ("config", "list")), ("fsck", ("fsck",)), ("gc", ("gc", "--dry-run")), ("init", ("init",)),
    ("log", ("log", "ckpt2", "-n", "fresh")), ("link", ("link", "ckpt:v0", "classifier")),
    ("alias", ("alias", "ckpt:v0", "candidate")), ("alias --delete", ("alias", "--delete", "ckpt", "candidate")),
    ("pull", ("pull", "ckpt:v1", "-o", "out")), ("rm", ("rm", "fresh", "--all")), ("upgrade", ("upgrade",)),
    ("push", ("push", "ckpt:v1", "classifier:v0", "--to", "./pushed")), ("remote ls", ("remote", "ls")),
    ("cache", ("cache",)), ("cache prune", ("cache", "prune", "--older-than", "1d")),
]


def test_the_command_prints_what_its_form_declares(mr, story):
    from modelreg import records as forms

    by_name = {f.name: f for f in forms.FORMS}
    assert {name for name, _ in CLI_FORMS} == set(by_name), "every declared form is exercised"
    for name, args in CLI_FORMS:
        form = by_name[name]
        doc = json.loads(mr(*args, "--json").stdout)
        objects = doc if form.shape == "list" else [doc]
        assert isinstance(doc, list) == (form.shape == "list"), name
        for obj in objects:
            keys = [f.name for f in form.key_fields()]
            assert set(form.contract_keys()) <= set(obj) <= set(keys), (name, list(obj))
            if not form.open:
                assert list(obj) == [k for k in keys if k in obj], (name, "keys out of order")
        result = mr(*args, "--plain")
        width = len(form.columns)
        for line in result.stdout.splitlines():
            cells = line.split("\t")
            if form.fields:  # show: field, then one value (several for each-fields)
                assert cells[0] in [f.name for f in form.fields], (name, line)
            else:
                assert len(cells) == width, (name, line)


def test_the_man_pages_list_the_declared_columns_and_keys():
    from modelreg import records as forms
    from modelreg.cli.manpage import esc

    man = SRC.parent.parent / "man"
    for form in forms.FORMS:
        page = (man / f"modelreg-{form.name.split()[0]}.1").read_text()
        plain, _, json_part = page.partition('.SS "\\-\\-json"')
        columns = re.search(rf"^\\fBmodelreg {re.escape(esc(form.name))}\\fR\n(.*?)(?=\n\.|\Z)", plain, re.M | re.S)
        keys = re.search(rf"^\\fBmodelreg {re.escape(esc(form.name))}\\fR\n(.*?)(?=\n\.|\Z)", json_part, re.M | re.S)
        assert columns and keys, form.name
        assert re.findall(r"\\fI([^\\]+)\\fR", columns.group(1).partition("Fields")[0]) == \
            [c.name for c in form.columns], form.name
        assert re.findall(r"\\fB([^\\]+)\\fR", keys.group(1)) == form.contract_keys(), form.name


def test_every_declared_field_has_a_one_line_description():
    from modelreg import records as forms

    for form in forms.FORMS:
        for f in (*form.key_fields(), *form.columns, *form.fields):
            assert f.doc.strip() and "\n" not in f.doc, (form.name, f.name)
