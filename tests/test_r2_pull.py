"""Issue 9 (Reliability II): a refused pull changes nothing, pull never writes into the
registry, and progress moves with the bytes, not with the files."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import modelreg
from conftest import make_tree
from foundation_util import assert_error, manifest_path, ok, rewrite_manifest

MiB = 1 << 20


def modes_and_contents(root: Path) -> dict[str, tuple[bytes, int]]:
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath, name)
            found[path.relative_to(root).as_posix()] = (path.read_bytes(), stat.S_IMODE(os.lstat(path).st_mode))
    return found


# -- a refused pull changes nothing ---------------------------------------------------


@pytest.fixture
def pulled(isolated_env):
    """A version with an executable and a plain file, pulled into out/; the registry."""
    src = make_tree(isolated_env / "ckpt", {"run.sh": "#!/bin/sh\n", "weights.bin": b"w" * 1000,
                                           "sub/tool": "#!/bin/sh\necho\n"}, executable=("run.sh", "sub/tool"))
    reg = modelreg.Registry.init(isolated_env)
    reg.log(src, name="ckpt")
    reg.pull("ckpt", isolated_env / "out")
    return reg


def _spoil(out: Path) -> None:
    # Two files that only need their executable bit fixed, and one real conflict.
    (out / "run.sh").chmod(0o644)
    (out / "sub" / "tool").chmod(0o600)
    (out / "weights.bin").write_bytes(b"local edits")


def test_a_refused_pull_fixes_no_executable_bit_through_the_api(pulled, isolated_env):
    out = isolated_env / "out"
    _spoil(out)
    before = modes_and_contents(out)
    with pytest.raises(modelreg.Conflict):
        pulled.pull("ckpt", out)
    assert modes_and_contents(out) == before


def test_a_refused_pull_fixes_no_executable_bit_through_the_command(mr, pulled, isolated_env):
    out = isolated_env / "out"
    _spoil(out)
    before = modes_and_contents(out)
    assert_error(mr("pull", "ckpt", "-o", out), 4, "weights.bin")
    assert modes_and_contents(out) == before
    # Once the conflict is gone, the same pull fixes the modes.
    ok(mr("pull", "ckpt", "-o", out, "--force"))
    after = modes_and_contents(out)
    assert after["run.sh"][1] & 0o100 and after["sub/tool"][1] & 0o100
    assert after["weights.bin"][0] == b"w" * 1000


# -- pull never writes into the registry ---------------------------------------------

COLL = ".modelreg/collections/local/default/m"


@pytest.fixture
def registry_bait(mr, isolated_env):
    """m:v0 holds the protected alias `production`; m:v1's files look like registry files."""
    ok(mr("log", make_tree(isolated_env / "one", {"a.txt": "one\n"}), "-n", "m", "-a", "production"))
    bait = {"production": "v1\n", "aliases/production": "v1\n", "sub/aliases/production": "v1\n",
            "sub/production": "v1\n", "config.toml": "format = 1\n",
            # format 2: a file landing in a collection as its next change record would commit it
            "changes/000000000002.json": "{}\n", "sub/changes/000000000002.json": "{}\n", "snapshot.json": "{}\n"}
    ok(mr("log", make_tree(isolated_env / "two", bait), "-n", "m"))
    return isolated_env


def registry_state(mr, work: Path):
    registry = work / ".modelreg"
    collection = registry / COLL[len(".modelreg/"):]
    files = {str(p.relative_to(collection)): p.read_bytes() for p in sorted(collection.rglob("*")) if p.is_file()}
    return (files, (registry / "config.toml").read_bytes(),
            ok(mr("history", "m", "--json")), json.loads(ok(mr("fsck", "--json")))["ok"])


def _target(work: Path, case: str) -> list[str]:
    if case == "registry":
        return ["-o", ".modelreg"]
    if case == "registry-absolute":
        return ["-o", str(work / ".modelreg")]
    if case == "aliases-dir":
        return ["-o", f"{COLL}/changes"]
    if case == "new-dir-inside":
        return ["-o", ".modelreg/newdir"]
    if case == "link-to-registry":
        (work / "reglink").symlink_to(work / ".modelreg")
        return ["-o", "reglink"]
    if case == "link-to-alias-file":
        (work / "aliaslink").symlink_to(work / COLL / "changes" / "000000000000.json")
        return ["-o", "aliaslink"]
    if case == "link-to-collection":
        (work / "colllink").symlink_to(work / COLL)
        return ["-o", "colllink"]
    if case == "subdir-link-in-cwd":
        # `sub` leads into the registry, which lies inside DIR: not "outside DIR", but still refused.
        (work / "sub").symlink_to(work / COLL)
        return ["-o", "."]
    if case == "subdir-link-in-dir":
        (work / "dir").mkdir()
        (work / "dir" / "sub").symlink_to(work / COLL)
        return ["-o", "dir"]
    raise AssertionError(case)


CASES = ["registry", "registry-absolute", "aliases-dir", "new-dir-inside", "link-to-registry", "link-to-alias-file",
         "link-to-collection", "subdir-link-in-cwd", "subdir-link-in-dir"]


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
@pytest.mark.parametrize("case", CASES)
def test_pull_into_the_registry_is_refused_and_changes_nothing(mr, registry_bait, case, force):
    work = registry_bait
    before = registry_state(mr, work)
    assert_error(mr("pull", "m:v1", *_target(work, case), *force), 2, "registry")
    assert registry_state(mr, work) == before
    assert ok(mr("show", "m:v0", "--json")) and json.loads(ok(mr("show", "m:v0", "--json")))["aliases"] == ["production"]


def test_pull_into_the_registry_is_refused_through_the_api(registry_bait):
    reg = modelreg.Registry.open(registry_bait)
    aliases = registry_bait / COLL / "changes"
    before = modes_and_contents(registry_bait / ".modelreg")
    for target in (aliases, registry_bait / ".modelreg", registry_bait / ".modelreg" / "objects" / "new"):
        with pytest.raises(modelreg.InvalidInput, match="registry"):
            reg.pull("m:v1", target, force=True)
    assert modes_and_contents(registry_bait / ".modelreg") == before


def test_a_registry_not_named_modelreg_is_protected_too(mr, isolated_env):
    # --root may name any directory holding config.toml and objects/; a version's file may
    # then have a path that, pulled next to it, lands inside it.
    ok(mr("init", isolated_env))
    (isolated_env / ".modelreg").rename(isolated_env / "store")
    bait = make_tree(isolated_env / "bait", {"store/config.toml": "format = 99\n", "x.txt": "x\n"})
    ok(mr("--root", "store", "log", bait, "-n", "bait"))
    config = (isolated_env / "store" / "config.toml").read_bytes()
    (isolated_env / "out").mkdir()
    (isolated_env / "out" / "store").symlink_to(isolated_env / "store")
    for target in (".", "store", "out"):
        result = mr("--root", "store", "pull", "bait", "-o", target, "--force")
        assert_error(result, 2)
    assert (isolated_env / "store" / "config.toml").read_bytes() == config
    assert not (isolated_env / "x.txt").exists() and not (isolated_env / "out" / "x.txt").exists()
    # Beside the registry, a version without such paths pulls as usual.
    ok(mr("--root", "store", "log", make_tree(isolated_env / "plain", {"y.txt": "y\n"}), "-n", "plain"))
    ok(mr("--root", "store", "pull", "plain", "-o", "."))
    assert (isolated_env / "y.txt").read_text() == "y\n"


def test_pulling_next_to_the_registry_still_works(mr, registry_bait):
    # The registry inside DIR is fine as long as nothing lands in it.
    ok(mr("pull", "m:v0", "-o", "."))
    assert (registry_bait / "a.txt").read_text() == "one\n"


def test_a_manifest_entry_repointed_at_another_blob_of_the_same_size_writes_nothing(mr, isolated_env):
    ok(mr("log", make_tree(isolated_env / "ckpt", {"a.bin": "AAAA", "b.bin": "BBBB"}), "-n", "ckpt"))
    manifest = manifest_path(isolated_env / ".modelreg", "ckpt", 0)
    data = json.loads(manifest.read_text())
    data["files"][1]["digest"] = data["files"][0]["digest"]  # b.bin now claims a.bin's bytes
    rewrite_manifest(manifest, json.dumps(data).encode())
    assert_error(mr("pull", "ckpt", "-o", "out"), 1)
    assert not (isolated_env / "out").exists()


# -- progress that moves ---------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, n: int) -> None:
        self.calls.append(n)


def big_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(MiB)
    with open(path, "wb") as fh:
        for _ in range(size // MiB):
            fh.write(block)
        fh.write(block[: size % MiB])
    return path


@pytest.fixture
def big(isolated_env):
    return big_file(isolated_env / "big.bin", 100 * MiB + 12345)


@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "no-fsync"])
def test_log_of_one_large_file_reports_progress_per_chunk(isolated_env, big, fsync):
    reg = modelreg.Registry.init(isolated_env)
    reg.config_set("core.fsync", fsync)
    cb = Counter()
    reg.log(big, name="big", on_progress=cb)
    assert len(cb.calls) > 5, cb.calls
    assert sum(cb.calls) == big.stat().st_size
    # Unchanged on a second log: skipped through the stat cache, and still counted in full.
    again = Counter()
    assert not reg.log(big, name="big", on_progress=again).new
    assert sum(again.calls) == big.stat().st_size


@pytest.mark.parametrize("mode,verify", [("copy", None), ("copy", False), ("auto", None), ("hardlink", True),
                                         ("symlink", None)])
def test_pull_of_one_large_file_reports_progress_per_chunk(isolated_env, big, mode, verify):
    reg = modelreg.Registry.init(isolated_env)
    reg.log(big, name="big")
    cb = Counter()
    reg.pull("big", isolated_env / "out", mode=mode, verify=verify, on_progress=cb)
    assert sum(cb.calls) == big.stat().st_size
    if mode in ("copy", "auto"):
        assert len(cb.calls) > 5, cb.calls
    # A second pull finds everything in place: the bar still reaches its total.
    again = Counter()
    reg.pull("big", isolated_env / "out", mode=mode, verify=verify, on_progress=again)
    assert sum(again.calls) == big.stat().st_size


def test_small_files_report_their_total(isolated_env, tree):
    reg = modelreg.Registry.init(isolated_env)
    total = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    cb = Counter()
    reg.log(tree, name="ckpt", on_progress=cb)
    assert sum(cb.calls) == total
    pulled = Counter()
    reg.pull("ckpt", isolated_env / "out", on_progress=pulled)
    assert sum(pulled.calls) == total
    partial = Counter()
    reg.pull("ckpt", isolated_env / "part", files=["*.json"], on_progress=partial)
    assert sum(partial.calls) == (tree / "config.json").stat().st_size


class Tmux:
    def __init__(self, tmp_path: Path, cwd: Path, env: dict) -> None:
        self.tmux = [shutil.which("tmux"), "-S", str(tmp_path / "tmux.sock"), "-f", "/dev/null"]
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        subprocess.run([*self.tmux, "new-session", "-d", "-x", "120", "-y", "30", "-c", str(cwd),
                        f"env {exports} TERM=xterm-256color bash --norc --noprofile"], check=True)

    def type(self, line: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-l", line], check=True)
        subprocess.run([*self.tmux, "send-keys", "Enter"], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p"], check=True, capture_output=True,
                              text=True).stdout

    def wait_for(self, pattern: str, limit: float = 120) -> str:
        # A bound against a hang, not a timing assertion.
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} never appeared:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.fixture
def tmux(tmp_path, isolated_env):
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    bindir = str(Path(sys.executable).parent)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "HOME": os.environ["HOME"], "NO_COLOR": "1",
           "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "PS1": "'$ '"}
    session = Tmux(tmp_path, isolated_env, env)
    yield session
    session.close()


def test_a_terminal_sees_a_byte_bar_that_clears_itself(tmux, isolated_env):
    big_file(isolated_env / "huge.bin", 300 * MiB)
    tmux.type("python -m modelreg log huge.bin -n huge; echo LOGGED-$?")
    final = tmux.wait_for(r"LOGGED-\d")
    assert "LOGGED-0" in final and "huge:v0" in final
    # Cleared at the end: no bar, no partial byte counts left on the screen.
    assert "logging" not in final and "MB" not in final and "━" not in final, final

    tmux.type("python -m modelreg pull huge -o out; echo PULLED-$?")
    final = tmux.wait_for(r"PULLED-\d")
    assert "PULLED-0" in final and "pulling" not in final and "━" not in final, final
    assert (isolated_env / "out" / "huge.bin").stat().st_size == 300 * MiB
