"""Registries at other locations: the user's config, named remotes, `-r`, and `push`.

Each "machine" has its own working directory, HOME, XDG_CONFIG_HOME and user name; the
team's registry is a shared directory. Races run as real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tree

import modelreg
from modelreg.errors import Conflict, InvalidInput, NotFound


class Machine:
    """One user on one machine: `m.mr("push", ...)` runs the command there (in-process)."""

    def __init__(self, mr, base: Path, name: str) -> None:
        self.name = name
        self.home = base / f"{name}-home"
        self.work = base / f"{name}-work"
        self.config = self.home / "xdg"
        for d in (self.home, self.work, self.config):
            d.mkdir(parents=True, exist_ok=True)
        self._mr = mr
        self.env = {**os.environ, "HOME": str(self.home), "XDG_CONFIG_HOME": str(self.config),
                    "USER": name, "LOGNAME": name}
        for key in [k for k in self.env if k.startswith("MODELREG_") and k != "MODELREG_LOCK_TIMEOUT"]:
            del self.env[key]

    def mr(self, *args, env=None, **kwargs):
        return self._mr(*args, cwd=str(self.work), env=env or self.env, **kwargs)

    def proc(self, *args) -> subprocess.Popen:
        """The installed command as a real process on this machine."""
        return subprocess.Popen([sys.executable, "-m", "modelreg", *map(str, args)], cwd=self.work, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def machines(mr, tmp_path):
    def make(name):
        return Machine(mr, tmp_path, name)
    return make


def ok(result):
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result


def refused(result, code: int):
    """SPEC §4: the exit code, stdout empty, one error line (and an optional hint)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("modelreg: error: ") and all(ln.startswith("hint: ") for ln in lines[1:]), lines
    return result


def files_under(path: Path) -> dict[str, int]:
    """Every file of a registry outside tmp/ and locks/, with its inode."""
    found = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if p.is_file() and not rel.startswith(("tmp/", "locks/")):
            found[rel] = p.stat().st_ino
    return found


def log_version(m: Machine, name: str, files: dict, *extra) -> str:
    src = make_tree(m.work / f"src-{name}-{len(list(m.work.iterdir()))}", files)
    return ok(m.mr("log", src, "-n", name, *extra)).stdout.strip()


# -- the team story on a shared directory -----------------------------------------------


def test_team_story_on_a_shared_directory(machines, tmp_path):
    shared = tmp_path / "shared"
    a, b = machines("alice"), machines("bob")
    weights = os.urandom(70_000)
    make_tree(a.work / "ckpt", {"model.bin": weights, "conf/cfg.json": '{"layers": 3}\n'})
    ok(a.mr("log", "ckpt", "-n", "run-abc-model", "-m", "val_acc=0.91", "-m", "epoch=3", "-d", "first try"))

    ok(a.mr("remote", "add", "team", shared))
    pushed = ok(a.mr("push", "run-abc-model", "--to", "team"))
    assert pushed.stdout == "run-abc-model:v0 \u2192 team run-abc-model:v0\n"
    assert "created a new registry" in pushed.stderr  # the first write to an empty location makes it
    ok(a.mr("-r", "team", "link", "run-abc-model:v0", "classifier", "-a", "staging"))

    # B has no registry of its own: the shared one is the source of truth, read directly.
    ok(b.mr("remote", "add", "team", shared))
    out = b.work / "serve"
    ok(b.mr("-r", "team", "pull", "classifier:staging", "-o", out))
    assert (out / "model.bin").read_bytes() == weights
    assert (out / "conf/cfg.json").read_text() == '{"layers": 3}\n'
    shown = json.loads(ok(b.mr("-r", "team", "show", "classifier:staging", "--json")).stdout)
    assert shown["metadata"] == {"val_acc": 0.91, "epoch": 3}
    assert shown["description"] == "first try"
    assert shown["producer"]["user"] == "alice"  # who made it, not who pushed it
    assert not (b.work / ".modelreg").exists()

    ok(b.mr("-r", "team", "alias", "classifier:staging", "production", "--expect", "none"))
    # A saw no production either, but the check is made against the shared state: stale.
    refused(a.mr("-r", "team", "alias", "classifier:staging", "production", "--expect", "none"), 4)

    events = json.loads(ok(a.mr("-r", "team", "history", "classifier", "--json")).stdout)
    assert [(e["event"], e.get("alias"), e["user"]) for e in events] == [
        ("linked", None, "alice"), ("alias-set", "staging", "alice"), ("alias-set", "production", "bob")]
    assert all(e.get("host") for e in events)
    logged = json.loads(ok(b.mr("-r", "team", "history", "run-abc-model", "--json")).stdout)
    assert [(e["event"], e["user"]) for e in logged] == [("logged", "alice")] and logged[0]["host"]

    # The library sees the same registry.
    reg = modelreg.Registry.open(shared)
    assert reg.show("classifier:production").digest == shown["digest"]


def test_the_library_pushes_to_a_directory(tmp_path, tree):
    src = modelreg.Registry.init(tmp_path / "src")
    src.log(str(tree), name="resnet", metadata={"epoch": 1})
    pushed = src.push(["resnet"], str(tmp_path / "dst"))
    assert [(p.source, p.target, p.new) for p in pushed] == [("resnet:v0", "resnet:v0", True)]
    target = modelreg.Registry.open(tmp_path / "dst")
    assert target.show("resnet:v0").metadata == {"epoch": 1}
    assert [(p.new) for p in src.push("resnet:v0", target)] == [False]


# -- races between machines ----------------------------------------------------------


def _parallel_push(machines, tmp_path, contents: list[bytes]) -> tuple[Path, list[dict]]:
    shared = tmp_path / "shared"
    procs = []
    for i, content in enumerate(contents):
        m = machines(f"m{i}")
        make_tree(m.work / "ckpt", {"w.bin": content})
        ok(m.mr("log", "ckpt"))
        procs.append(m.proc("push", "ckpt", "--to", shared, "--json"))
    docs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        docs.extend(json.loads(stdout))
    return shared, docs


def test_parallel_pushes_of_different_content_get_distinct_numbers(machines, tmp_path):
    shared, docs = _parallel_push(machines, tmp_path, [f"content {i}".encode() * 100 for i in range(4)])
    assert sorted(d["target"] for d in docs) == ["ckpt:v0", "ckpt:v1", "ckpt:v2", "ckpt:v3"]
    assert all(d["new"] for d in docs)
    versions = modelreg.Registry.open(shared).versions("ckpt")
    assert [v.version for v in versions] == [0, 1, 2, 3]
    assert len({v.digest for v in versions}) == 4


def test_parallel_pushes_of_identical_content_make_one_version(machines, tmp_path):
    shared, docs = _parallel_push(machines, tmp_path, [b"same weights" * 100] * 4)
    assert {d["target"] for d in docs} == {"ckpt:v0"}
    assert sum(d["new"] for d in docs) == 1
    assert [v.version for v in modelreg.Registry.open(shared).versions("ckpt")] == [0]


# -- what push copies ------------------------------------------------------------------


def test_a_repush_copies_no_blob_and_makes_no_record(machines, tmp_path):
    a = machines("alice")
    log_version(a, "ckpt", {"a.bin": os.urandom(5000), "b.bin": os.urandom(7000)})
    target = tmp_path / "dst"
    first = json.loads(ok(a.mr("push", "ckpt", "--to", target, "--json")).stdout)
    assert first[0]["new"] is True
    before = files_under(target / ".modelreg")
    assert sum(1 for k in before if k.startswith("objects/")) == 2
    again = ok(a.mr("push", "ckpt", "--to", target, "--json"))
    assert json.loads(again.stdout) == [{"source": "ckpt:v0", "target": "ckpt:v0", "new": False, "to": str(target)}]
    assert files_under(target / ".modelreg") == before  # no new blob, manifest or record; none rewritten


def test_only_missing_blobs_are_copied(machines, tmp_path):
    a = machines("alice")
    shared_blob = os.urandom(4000)
    log_version(a, "ckpt", {"shared.bin": shared_blob, "one.bin": b"1"})
    target = tmp_path / "dst"
    ok(a.mr("push", "ckpt", "--to", target))
    inode = files_under(target / ".modelreg")
    log_version(a, "ckpt", {"shared.bin": shared_blob, "two.bin": b"2"})
    ok(a.mr("push", "ckpt:v1", "--to", target))
    after = files_under(target / ".modelreg")
    kept = {k: v for k, v in after.items() if k.startswith("objects/") and k in inode}
    assert kept == {k: v for k, v in inode.items() if k.startswith("objects/")}  # the same files, not rewritten
    assert sum(1 for k in after if k.startswith("objects/")) == 3  # shared.bin's blob once, one.bin's, two.bin's


def test_push_name_sends_every_live_version_with_the_targets_numbers(machines, tmp_path):
    a, b = machines("alice"), machines("bob")
    target = tmp_path / "dst"
    log_version(b, "ckpt", {"w": b"bob's own"})
    ok(b.mr("push", "ckpt", "--to", target))  # the target's v0 is taken
    for i in range(3):
        log_version(a, "ckpt", {"w": f"alice {i}".encode()})
    ok(a.mr("rm", "ckpt:v1"))
    result = ok(a.mr("push", "ckpt", "--to", target, "--plain"))
    assert [ln.split("\t") for ln in result.stdout.splitlines()] == [
        ["ckpt:v0", str(target), "ckpt:v1", "true"], ["ckpt:v2", str(target), "ckpt:v2", "true"]]
    assert ok(a.mr("push", "ckpt", "--to", target, "-q")).stdout == "ckpt:v1\nckpt:v2\n"
    there = modelreg.Registry.open(target)
    assert [v.version for v in there.versions("ckpt")] == [0, 1, 2]
    assert there.show("ckpt:v2").files == modelreg.Registry.open(a.work).show("ckpt:v2").files
    refused(a.mr("push", "ckpt:v1", "--to", target), 3)  # deleted here: nothing to push


def test_a_link_is_pushed_after_its_source_and_aliases_stay_home(machines, tmp_path):
    a = machines("alice")
    log_version(a, "ckpt", {"w": b"zero"})
    log_version(a, "ckpt", {"w": b"one"})
    ok(a.mr("link", "ckpt:v1", "classifier", "-a", "production", "-d", "the good one"))
    target = tmp_path / "dst"
    docs = json.loads(ok(a.mr("push", "classifier:production", "--to", target, "--json")).stdout)
    assert [(d["source"], d["target"]) for d in docs] == [("ckpt:v1", "ckpt:v0"), ("classifier:v0", "classifier:v0")]
    there = modelreg.Registry.open(target)
    link = there.show("classifier:v0")
    assert link.source == "ckpt:v0" and link.description == "the good one"
    assert "production" not in link.aliases and "production" not in there.show("ckpt:v0").aliases
    again = json.loads(ok(a.mr("push", "classifier", "--to", target, "--json")).stdout)
    assert [d["new"] for d in again] == [False, False]


def test_as_pushes_into_another_name(machines, tmp_path):
    a = machines("alice")
    log_version(a, "ckpt", {"w": b"alice's"})
    target = tmp_path / "dst"
    assert ok(a.mr("push", "ckpt", "--to", target, "--as", "alice-ckpt", "-q")).stdout == "alice-ckpt:v0\n"
    there = modelreg.Registry.open(target)
    assert [c.name for c in there.collections()] == ["alice-ckpt"]
    refused(a.mr("push", "ckpt", "--to", target, "--as", "x:v1"), 2)


def test_inputs_are_mapped_to_the_targets_versions(machines, tmp_path):
    a, b = machines("alice"), machines("bob")
    target = tmp_path / "dst"
    log_version(b, "base", {"w": b"bob's base"})
    ok(b.mr("push", "base", "--to", target))  # the target's base:v0 is another file set
    base_ref = log_version(a, "base", {"w": b"alice's base"})
    ok(a.mr("log", make_tree(a.work / "ft", {"w": b"fine-tuned"}), "-n", "ft", "--input", base_ref))
    docs = json.loads(ok(a.mr("push", "ft", "--to", target, "--json")).stdout)
    assert [(d["source"], d["target"]) for d in docs] == [("base:v0", "base:v1"), ("ft:v0", "ft:v0")]
    there = modelreg.Registry.open(target)
    (item,) = there.show("ft:v0").inputs
    assert item["ref"] == "base:v1"
    assert item["digest"] == there.show("base:v1").digest == modelreg.Registry.open(a.work).show("base:v0").digest


def test_a_format1_target_is_refused_with_the_upgrade_hint(machines, tmp_path):
    old = tmp_path / "old"
    archive = tmp_path / "v010"
    archive.mkdir()
    repo = Path(__file__).resolve().parents[1]
    got = subprocess.run(f"git -C {repo} archive 30aee38 src/modelreg | tar -x -C {archive}", shell=True,
                         capture_output=True)
    if got.returncode != 0:
        pytest.skip("modelreg 0.1.0 (commit 30aee38) is not available in this checkout")
    make_tree(tmp_path / "seed", {"x": b"x"})
    env = {**os.environ, "PYTHONPATH": str(archive / "src")}
    subprocess.run([sys.executable, "-m", "modelreg", "--root", old, "init"], env=env, check=True,
                   capture_output=True)
    assert (old / ".modelreg/config.toml").is_file()
    before = files_under(old / ".modelreg")
    a = machines("alice")
    log_version(a, "ckpt", {"w": b"new"})
    result = refused(a.mr("push", "ckpt", "--to", old), 4)
    assert "modelreg upgrade" in result.stderr
    assert files_under(old / ".modelreg") == before


# -- locations and remotes -------------------------------------------------------------


def test_remote_add_ls_rm(machines, tmp_path):
    a = machines("alice")
    ok(a.mr("remote", "add", "team", "shared/../team-dir"))
    assert ok(a.mr("remote", "add", "team", str(a.work / "team-dir"))).stdout == ""  # the same URL: no-op
    refused(a.mr("remote", "add", "team", tmp_path / "elsewhere"), 4)
    ok(a.mr("remote", "add", "cloud", "s3://bucket/models", "--endpoint", "http://127.0.0.1:9000"))
    assert json.loads(ok(a.mr("remote", "ls", "--json")).stdout) == [
        {"name": "cloud", "url": "s3://bucket/models", "endpoint": "http://127.0.0.1:9000"},
        {"name": "team", "url": str(a.work / "team-dir"), "endpoint": None}]
    assert ok(a.mr("remote", "ls", "--plain")).stdout == (
        f"cloud\ts3://bucket/models\thttp://127.0.0.1:9000\nteam\t{a.work / 'team-dir'}\t-\n")
    assert ok(a.mr("remote", "ls", "-q")).stdout == "cloud\nteam\n"
    for bad in (("bad/name", "/x"), ("timeout", "/x"), ("ok", "http://example.com/x"), ("ok", "")):
        refused(a.mr("remote", "add", *bad), 2)
    refused(a.mr("remote", "add", "ok", "/x", "--endpoint", "not a url"), 2)
    refused(a.mr("remote", "rm", "nope"), 3)
    ok(a.mr("remote", "rm", "cloud"))
    assert ok(a.mr("remote", "ls", "-q")).stdout == "team\n"
    assert ok(a.mr("config", "get", "--user", "remote.team.url")).stdout == f"{a.work / 'team-dir'}\n"
    # another user on another machine has none of these
    assert ok(machines("bob").mr("remote", "ls", "--json")).stdout.strip() == "[]"


def test_choosing_a_registry_by_remote(machines, tmp_path):
    a = machines("alice")
    log_version(a, "ckpt", {"w": b"local"})
    ok(a.mr("remote", "add", "team", tmp_path / "team"))
    refused(a.mr("-r", "team", "ls"), 3)  # nothing there yet
    refused(a.mr("-r", "nope", "ls"), 3)
    refused(a.mr("--root", a.work, "-r", "team", "ls"), 2)
    ok(a.mr("-r", "team", "log", make_tree(a.work / "t", {"w": b"remote"}), "-n", "direct"))  # first write creates
    assert (tmp_path / "team/.modelreg/config.toml").is_file()
    assert ok(a.mr("-r", "team", "ls", "-q")).stdout == "direct\n"
    assert ok(a.mr("ls", "-q")).stdout == "ckpt\n"  # without -r: the local one


@pytest.mark.parametrize("url", ["gs://bucket/x", "az://container/x"])
def test_object_stores_other_than_s3_are_refused_when_opened(machines, tmp_path, url):
    a = machines("alice")
    log_version(a, "ckpt", {"w": b"x"})
    ok(a.mr("remote", "add", "cloud", url))  # stored: only opening it is refused
    for args in (("-r", "cloud", "ls"), ("--root", url, "ls"), ("push", "ckpt", "--to", url),
                 ("push", "ckpt", "--to", "cloud"), ("init", url)):
        result = refused(a.mr(*args), 2)
        assert "object-store registries" in result.stderr and url in result.stderr
    env_result = refused(a.mr("ls", env={**a.env, "MODELREG_DIR": url}), 2)
    assert "object-store" in env_result.stderr
    with pytest.raises(InvalidInput):
        modelreg.Registry.open(url)
    assert sorted(p.name for p in a.work.iterdir() if p.name.startswith(("s3", "gs", "az"))) == []


def test_push_to_a_typo_creates_nothing(machines, tmp_path):
    a = machines("alice")
    log_version(a, "ckpt", {"w": b"x"})
    result = refused(a.mr("push", "ckpt", "--to", "teem"), 3)
    assert "./teem" in result.stderr
    assert not (a.work / "teem").exists()
    ok(a.mr("push", "ckpt", "--to", "./teem"))  # a path with a slash names a new directory
    assert (a.work / "teem/.modelreg").is_dir()
    refused(a.mr("push", "nothing", "--to", "./other"), 3)
    assert not (a.work / "other").exists()  # a refused push creates no target


# -- the two configs -------------------------------------------------------------------


def test_user_config_keys(machines):
    a = machines("alice")
    assert ok(a.mr("config", "get", "--user", "remote.timeout")).stdout == "30s\n"
    ok(a.mr("config", "set", "--user", "remote.timeout", "2m"))
    ok(a.mr("config", "set", "--user", "cache.dir", "~/cache"))
    ok(a.mr("config", "set", "--user", "pull.mode", "copy"))
    listed = json.loads(ok(a.mr("config", "list", "--user", "--json")).stdout)
    assert listed == {"pull.mode": "copy", "cache.dir": str(a.home / "cache"), "remote.timeout": "2m"}
    assert (a.config / "modelreg/config.toml").is_file()
    ok(a.mr("config", "unset", "--user", "remote.timeout"))
    assert ok(a.mr("config", "get", "--user", "remote.timeout", "-q")).stdout == "30s\n"
    for args in (("set", "--user", "remote.timeout", "5x"), ("set", "--user", "pull.mode", "teleport"),
                 ("set", "--user", "no.such", "1"), ("get", "--user", "remote"), ("get", "--user", "remote.x.y"),
                 ("set", "--user", "remote.bad/name.url", "/x"), ("unset", "--user", "gc.grace")):
        refused(a.mr("config", *args), 2)
    # the registry's config needs no user file, and user keys are not registry keys
    log_version(machines("bob"), "ckpt", {"w": b"x"})
    bob = machines("bob")
    assert ok(bob.mr("config", "get", "pull.mode")).stdout == "auto\n"
    refused(bob.mr("config", "set", "remote.timeout", "1m"), 2)


def test_the_users_file_cannot_weaken_the_registrys_protected_aliases(machines):
    a = machines("alice")
    log_version(a, "ckpt", {"w": b"0"})
    log_version(a, "ckpt", {"w": b"1"})
    ok(a.mr("alias", "ckpt:v0", "production"))
    for args in (("set", "--user", "aliases.protected", ""), ("get", "--user", "aliases.protected"),
                 ("set", "--user", "core.fsync", "false")):
        result = refused(a.mr("config", *args), 2)
        assert "not a user setting" in result.stderr
    # even written by hand, the key is not read from the user's file
    (a.config / "modelreg").mkdir(parents=True, exist_ok=True)
    (a.config / "modelreg/config.toml").write_text('[aliases]\nprotected = []\n')
    refused(a.mr("alias", "ckpt:v1", "production"), 4)
    assert "aliases.protected" not in json.loads(ok(a.mr("config", "list", "--user", "--json")).stdout)


def test_the_users_pull_mode_overrides_the_registrys(machines):
    a = machines("alice")
    log_version(a, "ckpt", {"w": b"content"})
    ok(a.mr("config", "set", "pull.mode", "copy"))
    ok(a.mr("config", "set", "--user", "pull.mode", "symlink"))
    ok(a.mr("pull", "ckpt", "-o", "out"))
    assert (a.work / "out/w").is_symlink()
    ok(a.mr("config", "unset", "--user", "pull.mode"))
    ok(a.mr("pull", "ckpt", "-o", "out2"))
    assert not (a.work / "out2/w").is_symlink()


def test_parallel_remote_adds_are_all_kept(machines):
    a = machines("alice")
    procs = [a.proc("remote", "add", f"r{i}", f"/srv/r{i}") for i in range(6)]
    for p in procs:
        _, stderr = p.communicate(timeout=60)
        assert p.returncode == 0, stderr
    assert ok(a.mr("remote", "ls", "-q")).stdout.split() == [f"r{i}" for i in range(6)]


def test_tab_completes_remote_names_without_typer(machines):
    a = machines("alice")
    ok(a.mr("remote", "add", "team", "/srv/team"))
    ok(a.mr("remote", "add", "tools", "/srv/tools"))
    env = {**a.env, "_MODELREG_COMPLETE": "complete_bash", "COMP_WORDS": "modelreg -r t", "COMP_CWORD": "2"}
    code = ("import sys, modelreg.cli.entry as e; rc = e.run(); "
            "assert 'typer' not in sys.modules and 'rich' not in sys.modules; sys.exit(rc)")
    got = subprocess.run([sys.executable, "-c", code], env=env, cwd=a.work, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["team", "tools"]


def test_a_dangling_link_is_skipped_in_a_whole_push_and_refused_by_name(machines, tmp_path):
    a = machines("alice")
    log_version(a, "ckpt", {"w": b"gone soon"})
    log_version(a, "ckpt", {"w": b"stays"})
    ok(a.mr("link", "ckpt:v0", "classifier"))
    ok(a.mr("link", "ckpt:v1", "classifier"))
    ok(a.mr("rm", "ckpt:v0", "--force"))
    target = tmp_path / "dst"
    refused(a.mr("push", "classifier:v0", "--to", target), 3)
    assert not target.exists()  # refused before the target was made
    result = ok(a.mr("push", "classifier", "--to", target, "--json"))
    assert [(d["source"], d["target"]) for d in json.loads(result.stdout)] == [
        ("ckpt:v1", "ckpt:v0"), ("classifier:v1", "classifier:v0")]
    assert "dangling" in result.stderr
