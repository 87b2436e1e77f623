"""Real processes at once: parallel first logs, identical logs, and logs racing a gc loop."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from conftest import make_tree
from modelreg import Registry
from modelreg.hashing import version_digest
from reliability_util import env_for, run_cli, spawn_cli

pytestmark = pytest.mark.slow

PARALLEL = 16


def finish(procs) -> list[dict]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        results.append(json.loads(out))
    return results


@pytest.mark.xfail(strict=True, reason="format 2: fsck does not read format-2 records yet, so it lists every live "
                                       "blob as reclaimable (being ported on another branch); all else here passes")
def test_parallel_first_logs_of_distinct_content(isolated_env, tmp_path):
    """16 `log`s at once in a directory with no registry: one registry, exactly v0..v15."""
    trees = [make_tree(tmp_path / f"src{i}", {"model.bin": f"weights {i}\n" * 50, "n.txt": str(i)})
             for i in range(PARALLEL)]
    env = env_for()
    procs = [spawn_cli("log", tree, "-n", "m", "--json", cwd=isolated_env, env=env) for tree in trees]
    results = finish(procs)
    assert sorted(r["version"] for r in results) == list(range(PARALLEL))
    assert all(r["new"] for r in results)
    assert [p.name for p in isolated_env.iterdir()] == [".modelreg"]  # no stray init staging dirs

    reg = Registry.open(isolated_env / ".modelreg")
    by_ref = {r["ref"]: r["digest"] for r in results}
    for i, tree in enumerate(trees):
        manifest = reg.resolve(next(ref for ref, d in by_ref.items() if d == reg_digest(reg, tree)))
        assert {f.path for f in manifest.files} == {"model.bin", "n.txt"}
    assert [v.version for v in reg.versions("m")] == list(range(PARALLEL))
    logged = [e for e in reg.history("m") if e["event"] == "logged"]
    assert sorted(e["version"] for e in logged) == list(range(PARALLEL))
    result = reg.fsck()
    assert result.ok and result.reclaimable == (), (result.problems, result.reclaimable)


def reg_digest(reg: Registry, tree) -> str:
    """The version digest `tree` would get, computed independently of the store."""
    from modelreg.hashing import hash_file

    entries = []
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        digest, size = hash_file(path)
        entries.append((path.relative_to(tree).as_posix(), digest, size, False))
    return version_digest(entries)


@pytest.mark.xfail(strict=True, reason="format 2: fsck does not read format-2 records yet, so it lists every live "
                                       "blob as reclaimable (being ported on another branch); all else here passes")
def test_parallel_logs_of_the_same_content_make_one_version(isolated_env, tmp_path):
    tree = make_tree(tmp_path / "same", {"model.bin": b"same" * 1000, "config.json": "{}"})
    Registry.init(isolated_env)
    env = env_for(isolated_env / ".modelreg")
    procs = [spawn_cli("log", tree, "-n", "m", "-a", f"a{i}", "--json", env=env) for i in range(PARALLEL)]
    results = finish(procs)
    assert {r["ref"] for r in results} == {"m:v0"}
    assert sum(r["new"] for r in results) == 1
    reg = Registry.open(isolated_env / ".modelreg")
    assert [v.version for v in reg.versions("m")] == [0]
    assert set(reg.show("m:v0").aliases) == {f"a{i}" for i in range(PARALLEL)} | {"latest"}
    result = reg.fsck()
    assert result.ok and result.reclaimable == ()


GC_LOOP = """
import sys, os
from modelreg import Registry
reg = Registry.open(sys.argv[1])
runs = removed = 0
while not os.path.exists(sys.argv[2]):
    result = reg.gc(grace=0)
    runs += 1
    removed += result.blobs
print(runs, removed)
"""


@pytest.mark.xfail(strict=True, reason="maintenance.gc still walks format 1's versions/ files: on format 2 it "
                                       "deletes every blob of every live version")
def test_logs_racing_a_gc_loop_stay_complete(isolated_env, tmp_path):
    """Each writer alternates two contents and deletes the previous version, so every log
    reuses blobs that are garbage at that moment, while `gc --grace 0` runs in a loop."""
    Registry.init(isolated_env).config_set("core.fsync", "false")
    root = isolated_env / ".modelreg"
    env = env_for(root)
    writers, rounds = 3, 4
    contents = {(w, k): make_tree(tmp_path / f"w{w}-{k}", {"model.bin": f"writer {w} content {k}\n" * 2000,
                                                           f"only-{k}.txt": f"{w}{k}"})
                for w in range(writers) for k in (0, 1)}
    stop = tmp_path / "stop"
    gc_proc = subprocess.Popen([sys.executable, "-c", GC_LOOP, str(root), str(stop)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logged: dict[int, list[dict]] = {w: [] for w in range(writers)}
    errors: list[str] = []

    def writer(w: int) -> None:
        reg = Registry.open(root)
        for i in range(rounds):
            result = run_cli("log", contents[w, i % 2], "-n", f"w{w}", "--json", env=env)
            if result.returncode != 0:
                errors.append(result.stderr)
                return
            logged[w].append(json.loads(result.stdout))
            if i:
                reg.rm(f"w{w}:v{i - 1}")  # its blobs are garbage now, and the next log reuses them

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    stop.touch()
    out, err = gc_proc.communicate(timeout=60)
    assert gc_proc.returncode == 0, err
    runs, removed = map(int, out.split())
    assert not errors, errors
    assert runs > rounds and removed > 0  # gc really ran, and really deleted, in between

    reg = Registry.open(root)
    for w in range(writers):
        assert [r["version"] for r in logged[w]] == list(range(rounds))
        last = logged[w][-1]
        pulled = reg.pull(last["ref"], tmp_path / f"out-{w}", mode="copy")
        assert pulled.files == 2
    result = reg.fsck()
    assert result.ok, result.problems
