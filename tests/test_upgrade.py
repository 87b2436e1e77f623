"""Issue 10: `modelreg upgrade` turns a registry written by modelreg 0.1.0 into format 2.

The format-1 registry is built by real 0.1.0 processes (its code unpacked from git, see
conftest.modelreg_010), never by hand, so the test reads what users' disks hold. Checked:

- new code reads it (every `ls`, `show`, `history`, `diff` form) and refuses to write it
  (exit 4, hint `modelreg upgrade`), leaving every file as it was;
- after `upgrade` every one of those outputs is identical; a second `upgrade` is a no-op;
  new writes work and `fsck` is clean;
- a SIGKILL at any write-class system call of `upgrade` leaves reads identical, and the
  next `upgrade` completes to the same result;
- a 0.1.0 process never writes afterwards: neither one started after the upgrade nor one
  that had the registry open before it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import killing
from conftest import make_tree
from reliability_util import env_for

# the collections of the format-1 world and the refs that read them
NAMES = ["art", "cls", "gone", "solo", "team/vision/det"]
ARTIFACT_REFS = ["art:v0", "art:v1", "art:v3", "art:production", "art:best", "solo:v0", "team/vision/det:v0"]
LINK_REFS = ["cls:v0", "cls:v1", "cls:v2", "cls:production", "cls:staging"]
MODES = ([], ["--plain"], ["--json"])


@pytest.fixture(scope="module")
def f1(modelreg_010, tmp_path_factory):
    """A format-1 registry made by 0.1.0 processes; returns its pristine copy and the sources."""
    base = tmp_path_factory.mktemp("format1")
    src = {}
    for name, files in {
        "a": {"model.bin": b"A" * 2000, "config.json": '{"a": 1}\n'},
        "b": {"model.bin": b"B" * 2000, "config.json": '{"b": 2}\n', "run.sh": "#!/bin/sh\n"},
        "c": {"model.bin": b"C" * 1500, "notes/readme.txt": "c\n"},
        "d": {"model.bin": b"D" * 2500, "config.json": '{"a": 1}\n'},
        "e": {"e.bin": b"E" * 100},
        "g1": {"g.bin": b"G1"}, "g2": {"g.bin": b"G2"},
        "s": {"s.bin": b"S" * 300},
        "t": {"t.bin": b"T" * 400},
        "new": {"model.bin": b"N" * 1000},
    }.items():
        src[name] = make_tree(base / "src" / name, files, executable=("run.sh",))
    root = base / "template" / ".modelreg"
    old = modelreg_010

    def w(*args):
        old.check(*args, root=root, cwd=base)

    old.check("init", root.parent, cwd=base)
    w("log", src["a"], "-n", "art", "-m", "epoch=1", "-d", "first")           # art:v0
    w("log", src["b"], "-n", "art", "-a", "best", "-m", "epoch=2")            # art:v1
    w("log", src["c"], "-n", "art")                                           # art:v2, deleted below
    w("log", src["d"], "-n", "art", "-m", "epoch=4", "--input", "art:v0")     # art:v3
    w("alias", "art:v0", "production", "candidate")
    w("alias", "art:v3", "production", "--force", "--reason", "v3 beats v0 on eval")
    w("rm", "art:v2")
    w("link", "art:v1", "cls", "-a", "staging", "-d", "first link")          # cls:v0
    w("link", "art:v3", "cls", "-a", "production")                           # cls:v1
    w("log", src["e"], "-n", "doomed")
    w("link", "doomed:v0", "cls")                                            # cls:v2, dangling below
    w("rm", "doomed:v0", "--force", "--reason", "bad data")
    w("log", src["g1"], "-n", "gone", "-a", "x")
    w("log", src["g2"], "-n", "gone")
    w("rm", "gone", "--all", "--force")
    w("log", src["s"], "-n", "solo")
    w("log", src["t"], "-n", "team/vision/det", "-a", "best")
    # gc and the next test's reads must not depend on what was written a moment ago
    return {"template": root, "src": src, "base": base}


@pytest.fixture
def reg_root(f1, tmp_path):
    root = tmp_path / "reg" / ".modelreg"
    killing.restore(f1["template"], root)
    return root


def read_commands(full: bool = True) -> list[list[str]]:
    cmds = []
    modes = MODES if full else (["--json"],)
    for mode in modes:
        cmds.append(["ls", *mode])
        cmds.append(["ls", "team/vision/", *mode])
        for name in NAMES:
            cmds.append(["ls", name, *mode])
            cmds.append(["history", name, *mode])
        cmds.append(["history", "art:production", *mode])
        cmds.append(["history", "cls:staging", *mode])
        for ref in ARTIFACT_REFS:
            cmds.append(["ls", ref, *mode])
            cmds.append(["show", ref, *mode])
        for ref in LINK_REFS:
            cmds.append(["show", ref, *mode])
        cmds.append(["diff", "art:v0", "art:v3", *mode])
        cmds.append(["diff", "cls:v0", "art:v1", *mode])
    if full:
        cmds += [["ls", "-q"], ["ls", "art", "-q"], ["ls", "--kind", "registered", "--json"],
                 ["ls", "art", "--sort", "-metadata.epoch", "--plain"], ["ls", "art:v2"], ["ls", "cls:v2"],
                 ["show", "art:v2"], ["diff", "cls:v2", "art:v0"], ["show", "art:candidate", "--json"]]
    return cmds


def kill_reads() -> list[list[str]]:
    """Fewer reads, for checks after each of many kills: what a change could leave half done."""
    return [["ls", "--json"], *(["ls", n, "--json"] for n in NAMES), *(["history", n, "--json"] for n in NAMES),
            *(["show", r, "--json"] for r in LINK_REFS[:3] + ["art:production", "art:best"])]


def outputs(mr, root: Path, full: bool | None = True) -> dict:
    """What each read command shows: exit code, stdout, stderr."""
    got = {}
    for cmd in (kill_reads() if full is None else read_commands(full)):
        result = mr("--root", root, *cmd)
        got[" ".join(cmd)] = (result.returncode, result.stdout, result.stderr)
    return got


def assert_same(before: dict, after: dict, when: str) -> None:
    differ = [k for k in before if before[k] != after.get(k)]
    assert not differ, f"{when}: {len(differ)} outputs changed, e.g. `{differ[0]}`:\n" \
                       f"before {before[differ[0]]}\nafter  {after.get(differ[0])}"


def tree_state(root: Path, skip=("locks", "tmp")) -> dict:
    """Every stored file (path -> sha256), leaving out what only coordinates writers."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip or not path.is_file() or path.name == "index.json":
            continue  # index.json: a cache new code may rebuild while reading
        state[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def fmt(root: Path) -> int:
    import tomllib

    return tomllib.loads((root / "config.toml").read_text()).get("format", 1)


# -- reading and refusing before the upgrade ----------------------------------------------


def test_format1_reads_work_and_writes_are_refused_with_the_upgrade_hint(reg_root, f1, mr):
    from modelreg import Conflict, Registry
    from reliability_util import assert_error

    out = outputs(mr, reg_root)
    # the world is what it should be: v2 deleted, production moved to v3, cls:v2 dangling
    ls_art = json.loads(out["ls art --json"][1])
    assert [v["version"] for v in ls_art] == [0, 1, 3]
    assert {a: v["version"] for v in ls_art for a in v["aliases"]} == \
        {"candidate": 0, "best": 1, "production": 3, "latest": 3}
    assert json.loads(out["show cls:v2 --json"][1])["dangling"] is True
    assert json.loads(out["ls gone --json"][1]) == [] and out["show art:v2"][0] == 3
    events = [e["event"] for e in json.loads(out["history art --json"][1])]
    assert events.count("logged") == 4 and "deleted" in events and "alias-moved" in events
    moved = [e for e in json.loads(out["history art --json"][1]) if e["event"] == "alias-moved"]
    assert moved[0]["reason"] == "v3 beats v0 on eval"
    before = tree_state(reg_root)
    src = f1["src"]
    for cmd in (["log", src["new"], "-n", "art"], ["log", src["new"], "-n", "fresh"],
                ["alias", "art:v1", "x"], ["alias", "--delete", "art", "candidate"],
                ["link", "art:v0", "cls"], ["rm", "art:v0", "--force"], ["rm", "solo", "--all", "--force"]):
        result = mr("--root", reg_root, *cmd)
        assert_error(result, 4, "format-1", "modelreg upgrade")
    reg = Registry.open(reg_root)
    with pytest.raises(Conflict) as caught:
        reg.alias("art:v1", ["x"])
    assert "modelreg upgrade" in (caught.value.hint or "")
    assert tree_state(reg_root) == before, "a refused write changed the format-1 registry"
    assert_same(out, outputs(mr, reg_root), "after the refused writes")


# -- the upgrade --------------------------------------------------------------------------


def test_upgrade_keeps_every_output_and_is_idempotent(reg_root, f1, mr):
    from modelreg import Registry

    before = outputs(mr, reg_root)
    result = mr("--root", reg_root, "upgrade", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["upgraded"] is True and doc["format"] == 2 and doc["collections"] == 6  # doomed too
    assert fmt(reg_root) == 2
    assert Registry.open(reg_root).format == 2
    assert_same(before, outputs(mr, reg_root), "after upgrade")

    stored = tree_state(reg_root)
    again = mr("--root", reg_root, "upgrade", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["upgraded"] is False
    assert tree_state(reg_root) == stored, "a second upgrade changed files"
    fsck = mr("--root", reg_root, "fsck", "--json")
    assert fsck.returncode == 0 and json.loads(fsck.stdout)["ok"] is True, fsck.stdout

    # new code now writes: numbers go on after the deleted ones, history keeps the old events
    src = f1["src"]
    log = mr("--root", reg_root, "log", src["new"], "-n", "art", "-a", "best", "--json")
    assert log.returncode == 0, log.stderr
    assert json.loads(log.stdout)["version"] == 4
    assert mr("--root", reg_root, "alias", "art:v1", "candidate").returncode == 0
    assert mr("--root", reg_root, "alias", "art:v4", "production").returncode == 4  # still protected
    link = mr("--root", reg_root, "link", "art:v4", "cls", "--json")
    assert link.returncode == 0 and json.loads(link.stdout)["version"] == 3, link.stderr
    assert mr("--root", reg_root, "rm", "art:v1", "--force").returncode == 0, "rm after upgrade"
    assert mr("--root", reg_root, "rm", "art:v3").returncode == 4  # protected alias, linked from cls:v1
    fresh = mr("--root", reg_root, "log", src["new"], "-n", "gone", "--json")
    assert fresh.returncode == 0 and json.loads(fresh.stdout)["version"] == 2, fresh.stdout + fresh.stderr
    history = json.loads(mr("--root", reg_root, "history", "art", "--json").stdout)
    old_history = json.loads(before["history art --json"][1])
    assert history[:len(old_history)] == old_history
    assert [e["event"] for e in history[len(old_history):]][:2] == ["logged", "alias-moved"]
    ls_art = {v["version"]: v["aliases"] for v in json.loads(mr("--root", reg_root, "ls", "art", "--json").stdout)}
    assert sorted(ls_art) == [0, 3, 4] and "best" in ls_art[4] and "production" in ls_art[3]
    fsck = mr("--root", reg_root, "fsck", "--json")
    assert fsck.returncode == 0 and json.loads(fsck.stdout)["ok"] is True, fsck.stdout


# -- 0.1.0 writers after the upgrade ------------------------------------------------------


def test_a_010_process_started_after_the_upgrade_never_writes(reg_root, f1, mr, modelreg_010):
    assert mr("--root", reg_root, "upgrade").returncode == 0
    before_out = outputs(mr, reg_root, full=False)
    before = tree_state(reg_root)
    src = f1["src"]
    for cmd in (["log", src["new"], "-n", "art"], ["alias", "art:v1", "x"], ["link", "art:v0", "cls"],
                ["rm", "solo:v0", "--force"], ["gc", "--grace", "0"]):
        proc = modelreg_010.run(*cmd, root=reg_root, env_extra={"MODELREG_LOCK_TIMEOUT": 1})
        assert proc.returncode != 0, f"0.1.0 `{cmd[0]}` succeeded on a format-2 registry: {proc.stdout}"
        assert "format 2" in proc.stderr or "upgrade" in proc.stderr, proc.stderr
    assert tree_state(reg_root) == before, "a 0.1.0 process wrote to the upgraded registry"
    assert_same(before_out, outputs(mr, reg_root, full=False), "after 0.1.0 tried to write")


OPENED_EARLY = """
import sys, modelreg, modelreg.locks
# 0.1.0's writer registration waits max(timeout, 60) s for gc.lock; the test only needs
# to see that it gives up without writing, so its wait is the lock timeout here.
modelreg.locks.max = lambda *values: min(values)
reg = modelreg.Registry.open(sys.argv[1])
print("open", flush=True)
sys.stdin.readline()
try:
    if sys.argv[2] == "alias":
        reg.alias("art:v1", ["late"])
    elif sys.argv[2] == "log":
        reg.log(sys.argv[3], "art", aliases=["late"])
    elif sys.argv[2] == "gc":
        reg.gc(grace=0)
    elif sys.argv[2] == "rm":
        reg.rm("solo:v0", force=True)
    print("wrote", flush=True)
except modelreg.Error as exc:
    print(type(exc).__name__, exc.exit_code, flush=True)
"""


@pytest.mark.parametrize("op", ["alias", "log", "gc", "rm"])
def test_a_010_process_that_opened_the_registry_before_the_upgrade_never_writes(reg_root, f1, mr,
                                                                               modelreg_010, op):
    proc = subprocess.Popen([sys.executable, "-c", OPENED_EARLY, str(reg_root), op, str(f1["src"]["new"])],
                            env=modelreg_010.env(MODELREG_LOCK_TIMEOUT=1), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open", proc.stderr.read()
        upgraded = mr("--root", reg_root, "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        before_out = outputs(mr, reg_root, full=False)
        before = tree_state(reg_root)
        out, err = proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.split() == ["LockTimeout", "4"], f"0.1.0 {op} after the upgrade: {out!r} {err[-500:]}"
    assert tree_state(reg_root) == before, f"0.1.0 {op} wrote to the upgraded registry"
    assert_same(before_out, outputs(mr, reg_root, full=False), f"after 0.1.0 {op}")
    fsck = mr("--root", reg_root, "fsck", "--json")
    assert json.loads(fsck.stdout)["ok"] is True, fsck.stdout


# -- kill anywhere ------------------------------------------------------------------------

SKIP_STRACE = killing.strace_problem()
CAPS = {"write": 5, "publish": 5, "unlink": 2, "open": 2, "sync": 1}


@pytest.mark.skipif(SKIP_STRACE is not None, reason=SKIP_STRACE or "")
def test_upgrade_killed_at_any_write_class_call_is_finished_by_the_next_upgrade(f1, tmp_path, mr, modelreg_bin):
    """SIGKILL at write-class calls of `modelreg upgrade` (every group, a stride through
    many): reads stay identical to before; the next `upgrade` completes, and the result
    reads exactly as the uninterrupted upgrade's does, with fsck clean."""
    root = tmp_path / "k" / ".modelreg"
    env = env_for(root, MODELREG_LOCK_TIMEOUT=10, PYTHONHASHSEED=0)
    argv = [modelreg_bin, "upgrade"]
    killing.restore(f1["template"], root)
    before = outputs(mr, root, full=None)
    calls = killing.trace(argv, env=env, cwd=tmp_path, out=tmp_path / "trace.txt")
    assert_same(before, outputs(mr, root, full=None), "after an uninterrupted upgrade")
    chosen = [c for group in killing.GROUPS for c in killing.points(calls, group, CAPS[group])]
    assert chosen
    failures, killed = [], 0
    for call in chosen:
        killing.restore(f1["template"], root)
        kill = killing.kill_at(argv, call, env=env, cwd=tmp_path, out=tmp_path / "kill.txt")
        where = kill.at.label() if kill.killed else f"{call.label()} (not reached)"
        killed += kill.killed
        try:
            assert_same(before, outputs(mr, root, full=None), "after the kill")
            started = time.monotonic()
            again = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
            assert again.returncode == 0, f"upgrade again: exit {again.returncode}: {again.stderr[-300:]}"
            assert time.monotonic() - started < 15, "the next upgrade waited for the killed one"
            assert fmt(root) == 2, "the next upgrade did not finish"
            assert_same(before, outputs(mr, root, full=None), "after the next upgrade")
            fsck = mr("--root", root, "fsck", "--json")
            assert json.loads(fsck.stdout)["ok"] is True, f"fsck: {fsck.stdout[-400:]}"
        except (AssertionError, subprocess.TimeoutExpired, ValueError) as exc:
            failures.append(f"{where}: {exc}")
    print(f"upgrade: {len(chosen)} kill points, {killed} killed, {len(failures)} failed")
    assert killed, "no point killed the upgrade (the trace did not match the runs)"
    assert not failures, "\n".join(failures)
