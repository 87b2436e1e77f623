"""examples/makefile end to end: `make -j4` trains several checkpoints in parallel, logs
them all into one registry, links the best into `classifier` and promotes it with
`--expect`; a second `make -j4` changes nothing; a better version is promoted next time.

The pipeline is one test in three phases, since each builds on the registry the previous
one left. Below it, a CLI bug found on the way (see its comment).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "makefile"
GENERATED = (".modelreg", "data", "ckpt", "eval", "refs", "build", "__pycache__")
MODEL, REGISTERED = "moons-clf", "classifier"

def make(workdir: Path, modelreg_bin: str) -> subprocess.CompletedProcess:
    # Drop an outer make's jobserver settings, in case the tests themselves run under make.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "-j4", f"MODELREG={modelreg_bin}", f"PYTHON={sys.executable}"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=300)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"make failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"


@pytest.fixture
def query(script_runner):
    """`modelreg --root WORK/.modelreg ARGS --json`, in-process: the reads stay cheap."""
    def run(work: Path, *args: str):
        result = script_runner.run(["modelreg", "--root", str(work / ".modelreg"), *args, "--json"],
                                   print_result=False)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)
    return run


def snapshot(query, work: Path) -> dict:
    """Everything a re-run must leave alone: collections, versions, histories."""
    return {
        "collections": query(work, "ls"),
        "versions": query(work, "ls", MODEL),
        "history": query(work, "history", REGISTERED),
    }


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_j4_pipeline(tmp_path, modelreg_bin, query):
    work = tmp_path / "example"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns(*GENERATED))
    configs = sorted(p.stem for p in (work / "configs").glob("*.json"))
    assert len(configs) >= 4, "the example should train enough configs for -j4 to matter"

    # Phase 1: a fresh build; every checkpoint logged exactly once, in parallel.
    assert_ok(make(work, modelreg_bin))
    versions = query(work, "ls", MODEL)
    assert sorted(v["version"] for v in versions) == list(range(len(configs)))
    by_config = {v["metadata"]["name"]: v for v in versions}
    assert sorted(by_config) == configs
    for name, v in by_config.items():
        assert (work / "refs" / "ckpt" / f"{name}.ref").read_text().strip() == v["ref"]
        assert 0.5 < v["metadata"]["val_acc"] <= 1.0
    kinds = {c["name"]: (c["kind"], c["versions"]) for c in query(work, "ls")}
    assert kinds == {"moons": ("artifact", 1), MODEL: ("artifact", len(configs)),
                     REGISTERED: ("registered", 1), f"{REGISTERED}-test": ("artifact", 1)}

    best_acc = max(v["metadata"]["val_acc"] for v in versions)
    source = query(work, "show", f"{REGISTERED}:production")["source"]
    assert {v["ref"]: v["metadata"]["val_acc"] for v in versions}[source] == best_acc
    staging = query(work, "show", f"{REGISTERED}:staging")
    assert "production" in staging["aliases"]

    history = query(work, "history", REGISTERED)
    promotions = [e for e in history if e.get("alias") == "production"]
    assert [(e["event"], e["to"]) for e in promotions] == [("alias-set", 0)]
    assert "best val_acc" in promotions[0]["reason"] and source in promotions[0]["reason"]
    report = query(work, "show", f"{REGISTERED}-test")
    assert [i["ref"] for i in report["inputs"]] == [source]
    assert 0.5 < report["metadata"]["test_acc"] <= 1.0

    # Phase 2: running again is a no-op: exit 0, no new version, no new event.
    before = snapshot(query, work)
    assert_ok(make(work, modelreg_bin))
    assert snapshot(query, work) == before

    # Phase 3: a better checkpoint appears (logged by hand); the next make promotes it,
    # moving production with --expect v0.
    hand = work / "hand-tuned"
    shutil.copytree(work / "ckpt" / configs[0], hand)
    config = json.loads((hand / "config.json").read_text())
    (hand / "config.json").write_text(json.dumps({**config, "name": "hand-tuned"}) + "\n")
    logged = query(work, "log", str(hand), "-n", MODEL, "-m", "val_acc=1.0", "-m", "name=hand-tuned")
    new_ref = logged["ref"]
    assert new_ref == f"{MODEL}:v{len(configs)}"
    assert_ok(make(work, modelreg_bin))
    assert query(work, "show", f"{REGISTERED}:production")["source"] == new_ref
    moves = [e for e in query(work, "history", REGISTERED)
             if e.get("alias") == "production"][1:]
    assert [(e["event"], e["from"], e["to"]) for e in moves] == [("alias-moved", 0, 1)]
    assert new_ref in moves[0]["reason"]


# A CLI bug found while writing the example (a Makefile's `make` sends SIGTERM to its
# recipes when it is interrupted or killed): cli/entry.py catches
# `_click.exceptions.Abort`, which typer 0.29's vendored click does not have, so any
# exception that reaches that clause (SIGTERM's, or a real internal error) turns into
# "internal error: AttributeError: ... no attribute 'Abort'" and exit 1, hiding the cause.
def test_sigterm_while_waiting_for_a_lock_exits_143(tmp_path, modelreg_bin, query):
    work = tmp_path / "sig"
    (work / "ckpt").mkdir(parents=True)
    (work / "ckpt" / "w").write_text("1\n")
    query(work, "log", str(work / "ckpt"), "-n", "m")
    from modelreg import layout

    # format 2 keeps no collection lock: gc's lock is the one a writer waits for.
    lock = work / ".modelreg" / layout.GC_LOCK
    # Held by this (live) test process, so `log` waits for it.
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}))
    (work / "ckpt" / "w").write_text("2\n")
    proc = subprocess.Popen([modelreg_bin, "--root", str(work / ".modelreg"), "log", str(work / "ckpt"), "-n", "m"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MODELREG_LOCK_TIMEOUT": "30"})
    writers = work / ".modelreg" / "locks" / "writers"
    deadline = time.monotonic() + 3
    # a writer registers, finds gc's lock, unregisters and waits (the entry comes and goes
    # between polls, so after a few seconds it is taken to be waiting)
    while not any(f"-{proc.pid}-" in p.name for p in writers.glob("*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.5)
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert "internal error" not in err
    assert (proc.returncode, out) == (143, ""), err
