"""Real processes started together: version numbers are claimed once each, and parallel first
`log`s share one registry (SPEC §3, §5)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

import modelreg

from conftest import make_tree
from foundation_util import blake3_hex


def start_together(commands, cwd):
    """Start every command, held at a gate until all are running, then open the gate at once."""
    gate = cwd / ".gate"
    procs = [subprocess.Popen(["sh", "-c", 'while [ ! -e "$GATE" ]; do sleep 0.01; done; exec "$@"', "sh", *map(str, cmd)],
                              cwd=cwd, env={**os.environ, "GATE": str(gate)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for cmd in commands]
    time.sleep(0.2)
    gate.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append((proc.returncode, out, err))
    gate.unlink()
    return results


@pytest.mark.slow
def test_eight_concurrent_logs_of_one_artifact_make_exactly_v0_to_v7(modelreg_bin, tmp_path, isolated_env):
    subprocess.run([modelreg_bin, "init", "-q"], check=True, cwd=isolated_env)
    sources = [make_tree(tmp_path / f"run{i}", {"model.bin": f"weights of run {i}", "shared.txt": "same"})
               for i in range(8)]
    results = start_together([[modelreg_bin, "log", src, "-n", "model", "-q"] for src in sources], isolated_env)

    assert [code for code, _, _ in results] == [0] * 8, results
    assert all(err == "" for _, _, err in results), results
    printed = sorted(out.strip() for _, out, _ in results)
    assert printed == sorted(f"model:v{n}" for n in range(8))

    registry = isolated_env / ".modelreg"
    listed = json.loads(subprocess.run([modelreg_bin, "ls", "model", "--json"], cwd=isolated_env,
                                       capture_output=True, text=True, check=True).stdout)
    assert [v["version"] for v in listed] == list(range(8))
    # Each process got the number it printed, holding its own content.
    reg = modelreg.Registry.open(registry)
    for (_, out, _), src in zip(results, sources):
        by_path = {f.path: f.digest for f in reg.files(out.strip())}
        assert by_path["model.bin"] == blake3_hex((src / "model.bin").read_bytes())

    collection = registry / "collections" / "local" / "default" / "model"
    # format 2: one change record per version, each giving the next number in commit order
    records = [json.loads((collection / "changes" / n).read_bytes())
               for n in sorted(os.listdir(collection / "changes"))]
    assert [list(r["add"]) for r in records] == [[str(n)] for n in range(8)]
    events = [e for r in records for e in r["events"]]
    assert [e["version"] for e in events if e["event"] == "logged"] == list(range(8))
    assert len(os.listdir(collection / "manifests")) == 8
    assert os.listdir(registry / "tmp") == []


@pytest.mark.slow
def test_parallel_first_logs_in_a_fresh_directory_share_one_registry(modelreg_bin, tmp_path, isolated_env):
    sources = [make_tree(tmp_path / f"m{i}", {"w.bin": f"model {i}"}) for i in range(4)]
    results = start_together([[modelreg_bin, "log", src] for src in sources]
                             + [[modelreg_bin, "log", sources[0], "-n", "same"],
                                [modelreg_bin, "log", sources[1], "-n", "same"]], isolated_env)
    assert [code for code, _, _ in results] == [0] * 6, results
    assert [out for _, out, _ in results[:4]] == [f"m{i}:v0\n" for i in range(4)]
    assert sorted(out for _, out, _ in results[4:]) == ["same:v0\n", "same:v1\n"]

    assert [p.name for p in isolated_env.iterdir() if p.name.startswith(".modelreg")] == [".modelreg"]
    listed = json.loads(subprocess.run([modelreg_bin, "ls", "--json"], cwd=isolated_env, capture_output=True,
                                       text=True, check=True).stdout)
    assert sorted((c["name"], c["versions"]) for c in listed) == [("m0", 1), ("m1", 1), ("m2", 1), ("m3", 1),
                                                                  ("same", 2)]
    created = [err for _, _, err in results if "created a new registry" in err]
    assert len(created) == 1  # only the process that made it says so
