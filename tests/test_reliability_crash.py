"""SIGKILL at many points of `log`, `link`, `alias` and `gc`: nothing half-done is ever visible.

Each case stops a real CLI process at a chosen step (tests/crash_child.py), kills it
with SIGKILL, and then checks, in-process: fsck finds no problem (leftovers are only
reclaimable), what the killed command did is visible whole or not at all, the same
command run again succeeds (stale locks are broken), and gc removes every leftover.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

from conftest import make_tree
from modelreg import NotFound, Registry
from reliability_util import env_for, kill, spawn_cli, spawn_paused, wait_paused

pytestmark = pytest.mark.slow

A = {"model.bin": b"A" * 3000, "config.json": '{"a": 1}\n'}
B = {"model.bin": b"B" * 3000, "config.json": '{"b": 2}\n', "extra/notes.txt": "b\n"}


@pytest.fixture
def base(isolated_env, tmp_path):
    """m:v0 (content A) with alias best; classifier:v0 links it; B is ready to be logged."""
    # core.fsync=false is still safe against a killed process (SPEC §5), and 5x faster here
    Registry.init(isolated_env).config_set("core.fsync", "false")
    reg = Registry.open(isolated_env)
    reg.log(make_tree(tmp_path / "a", A), "m", aliases=["best"])
    reg.link("m:v0", "classifier", aliases=["staging"])
    make_tree(tmp_path / "b", B)
    return reg


def check_clean(reg: Registry) -> None:
    """fsck: no problem at all; gc removes every leftover; fsck then lists nothing."""
    reg = Registry.open(reg.path)
    result = reg.fsck()
    assert result.ok, result.problems
    reg.gc(grace=0)
    after = reg.fsck()
    assert after.ok and after.reclaimable == (), after.reclaimable


def crash(reg: Registry, tmp_path, step: str, *args) -> None:
    marker = tmp_path / f"marker-{time.monotonic_ns()}"
    proc = spawn_paused(step, marker, *args, env=env_for(reg.path))
    reached = wait_paused(proc, marker)
    kill(proc)
    assert reached, f"{args[0]} never reached step {step}"


def same_files(reg: Registry, ref: str, files: dict, out) -> None:
    reg.pull(ref, out, mode="copy")
    for rel, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        assert (out / rel).read_bytes() == data, rel


# -- log --------------------------------------------------------------------------------

LOG_STEPS = ["writer", "staged:1", "blob:1", "blob:3", "lock", "temp", "published", "history", "appended"]


@pytest.mark.parametrize("step", LOG_STEPS)
def test_sigkill_during_log(base, tmp_path, step):
    crash(base, tmp_path, step, "log", tmp_path / "b", "-n", "m", "-a", "candidate")
    reg = Registry.open(base.path)
    check_visible_log(reg, tmp_path)
    # the same log again completes it (or finds it complete), breaking any stale lock
    result = reg.log(tmp_path / "b", "m", aliases=["candidate"])
    assert result.version == 1
    assert reg.alias("m:v1", ["candidate"]).aliases == ("candidate", "latest")
    same_files(reg, "m:v1", B, tmp_path / "out2")
    check_clean(reg)


def check_visible_log(reg: Registry, tmp_path) -> None:
    versions = [v.version for v in reg.versions("m")]
    assert versions in ([0], [0, 1])
    if versions == [0, 1]:
        same_files(reg, "m:v1", B, tmp_path / "out1")  # a visible version is a whole version
    aliases = reg.collection(reg.parse("m").collection).aliases()
    assert aliases.get("best") == 0 and aliases.get("candidate") in (None, 1)
    assert reg.fsck().ok, reg.fsck().problems


# format 2 takes no lock to create a collection: the name claim, then record 0
@pytest.mark.parametrize("step", ["temp:1", "published:1", "history", "appended"])
def test_sigkill_while_log_creates_an_artifact(base, tmp_path, step):
    crash(base, tmp_path, step, "log", tmp_path / "b", "-n", "fresh")
    reg = Registry.open(base.path)
    assert reg.fsck().ok, reg.fsck().problems
    assert reg.log(tmp_path / "b", "fresh").ref == "fresh:v0"
    check_clean(reg)


# -- link -------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["temp:1", "published:1", "lock", "published:2", "replaced", "history"])
def test_sigkill_during_link_into_a_new_registered_model(base, tmp_path, step):
    crash(base, tmp_path, step, "link", "m:v0", "detector", "-a", "prod")
    reg = Registry.open(base.path)
    assert reg.fsck().ok, reg.fsck().problems
    if (reg.path / "collections/local/default/detector/collection.json").exists():
        links = reg.versions("detector")
        assert [(v.version, v.source) for v in links] in ([], [(0, "m:v0")])
    result = reg.link("m:v0", "detector", aliases=["prod"])
    assert result.ref == "detector:v0"
    assert reg.show("detector:prod").source == "m:v0"
    check_clean(reg)


# -- alias ------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["lock", "temp", "replaced:1", "replaced:2", "history", "appended"])
def test_sigkill_during_alias(base, tmp_path, step):
    base.log(tmp_path / "b", "m")
    crash(base, tmp_path, step, "alias", "m:v1", "best", "candidate")
    reg = Registry.open(base.path)
    aliases = reg.collection(reg.parse("m").collection).aliases()
    # format 2: one record moves both, so they move together or not at all
    assert (aliases["best"], aliases.get("candidate")) in ((0, None), (1, 1)), aliases
    assert reg.fsck().ok, reg.fsck().problems
    assert reg.alias("m:v1", ["best", "candidate"]).aliases == ("best", "candidate", "latest")
    check_clean(reg)


# -- gc ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["lock", "writer"])
def test_sigkill_during_gc_or_a_waiting_writer(base, tmp_path, step):
    base.rm("classifier:v0", force=True)
    base.rm("m:v0", force=True)
    command = ("gc", "--grace", "0") if step == "lock" else ("log", tmp_path / "b", "-n", "m")
    crash(base, tmp_path, step, *command)
    reg = Registry.open(base.path)
    assert reg.fsck().ok
    started = time.monotonic()
    assert reg.log(tmp_path / "b", "m").version == 1  # a dead gc's lock does not block writers
    assert reg.gc(grace=0).blobs == 2  # and a dead writer's entry does not block gc
    assert time.monotonic() - started < 5
    check_clean(reg)


# -- killed at whatever moment ----------------------------------------------------------


def test_sigkill_at_random_moments(base, tmp_path):
    """No hooks: logs of a bigger tree killed after random delays, then again completed."""
    big = make_tree(tmp_path / "big", {f"shard-{i:02d}.bin": bytes([i]) * 200_000 for i in range(20)})
    rng = random.Random(4)
    env = env_for(base.path)
    probe = time.monotonic()
    subprocess.run([sys.executable, "-c", "import modelreg.cli.app"], env=env, check=True)
    startup = time.monotonic() - probe
    for attempt in range(4):
        proc = spawn_cli("log", big, "-n", "big", "-a", "top", env=env)
        time.sleep(startup * 0.8 + rng.uniform(0, 0.4))
        kill(proc)
        reg = Registry.open(base.path)
        assert reg.fsck(quick=True).ok, reg.fsck(quick=True).problems
        try:
            versions = [v.version for v in reg.versions("big")]
        except NotFound:  # killed before the collection was created
            versions = []
        assert versions in ([], [0])
        if versions:
            reg.pull("big:v0", tmp_path / f"check-{attempt}", mode="copy")
    reg = Registry.open(base.path)
    assert reg.log(big, "big", aliases=["top"]).ref == "big:v0"
    check_clean(reg)
