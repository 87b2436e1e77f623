"""fsck and gc on format 2 (issue 10, parts 1 and 4): every problem kind, every leftover kind.

Each damage is done by hand to a registry made by the current code, then checked through
the library and through the command (`mr`): fsck names it (exit 1 for a problem, 0 for a
leftover), `gc --grace 0` removes every leftover and nothing live.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

import reliability_util as ru
from reliability_util import dead_pid, lock_record
from conftest import make_tree
from modelreg import Registry
from modelreg.util import now

P = "collections/local/default/"






@pytest.fixture
def reg(isolated_env, monkeypatch) -> Registry:
    monkeypatch.setenv("MODELREG_DIR", str(isolated_env / ".modelreg"))
    Registry.init(isolated_env).config_set("core.fsync", "false")
    return Registry.open(isolated_env)


@pytest.fixture
def populated(reg, tmp_path):
    """resnet v0 (best), v1 (shares config.json with v0), classifier v0 -> resnet:v1 (staging)."""
    a = make_tree(tmp_path / "a", {"model.bin": b"weights-a" * 50, "config.json": "{}\n"})
    b = make_tree(tmp_path / "b", {"model.bin": b"weights-b" * 50, "config.json": "{}\n"})
    reg.log(a, "resnet", aliases=["best"])
    reg.log(b, "resnet")
    reg.link("resnet:v1", "classifier", aliases=["staging"])
    assert reg.format == 2
    return reg


def cdir(reg: Registry, name: str) -> Path:
    return reg.path / P / name


def records(reg: Registry, name: str) -> list[Path]:
    return sorted((cdir(reg, name) / "changes").iterdir())


def manifest_of(reg: Registry, name: str, number: int) -> Path:
    summary = reg.collection(reg.parse(name).collection).state()["versions"][number]
    return cdir(reg, name) / "manifests" / f"{summary['manifest']}.json"


def blob_of(reg: Registry, ref: str, path: str) -> Path:
    entry = next(f for f in reg.resolve(ref).files if f.path == path)
    return reg.store.blob_path(entry.digest)


def append_record(reg: Registry, name: str, **fields) -> Path:
    """Hand-write the collection's next change record, as a writer of this format would."""
    seq = len(records(reg, name))
    state = reg.collection(reg.parse(name).collection).state(fresh=True)
    record = {"format": 2, "seq": seq, "txid": os.urandom(16).hex(), "time": now(), "user": "t", "host": "h",
              "events": [], "aliases": state["aliases"], **fields}
    path = cdir(reg, name) / "changes" / f"{seq:012d}.json"
    path.write_text(json.dumps(record))
    return path


def check(reg: Registry, mr) -> tuple[dict, dict]:
    """fsck through the library and the command; they agree. Returns (API JSON, CLI JSON)."""
    api = Registry.open(reg.path).fsck().to_json()
    run = mr("fsck", "--json")
    assert run.returncode == (0 if api["ok"] else 1), run.stderr
    assert "Traceback" not in run.stderr
    cli = json.loads(run.stdout)
    assert cli["problems"] == api["problems"] and cli["reclaimable"] == api["reclaimable"]
    return api, cli


def problem_texts(doc: dict) -> list[str]:
    return [f"{p['kind']} {p['object']}: {p['message']}" for p in doc["problems"]]


# -- a healthy registry ----------------------------------------------------------------


def test_a_healthy_format2_registry_is_clean(populated, mr):
    api, _ = check(populated, mr)
    assert api["ok"] and api["problems"] == [] and api["reclaimable"] == []
    assert (api["checked"]["versions"], api["checked"]["links"], api["checked"]["blobs"]) == (2, 1, 3)
    assert api["checked"]["aliases"] == 2
    assert mr("fsck", "--quick", "-q").returncode == 0
    # a snapshot that is behind, torn or missing is only slower: no problem
    snapshot = cdir(populated, "resnet") / "snapshot.json"
    snapshot.write_text(snapshot.read_text()[:15])
    (cdir(populated, "classifier") / "snapshot.json").unlink()
    assert check(populated, mr)[0]["ok"]


# -- problems --------------------------------------------------------------------------


@pytest.mark.parametrize("tamper", ["garbage", "wrong seq", "no txid", "bad alias map"])
def test_a_tampered_change_record_is_a_problem(populated, mr, tamper):
    path = records(populated, "resnet")[1]
    data = json.loads(path.read_text())
    if tamper == "garbage":
        path.write_bytes(path.read_bytes()[:-9])
    else:
        if tamper == "wrong seq":
            data["seq"] = 7
        elif tamper == "no txid":
            del data["txid"]
        else:
            data["aliases"] = {"best": "v0"}
        path.write_text(json.dumps(data))
    api, _ = check(populated, mr)
    assert not api["ok"]
    assert any(p["kind"] == "record" and p["object"].endswith("changes/000000000001.json")
               for p in api["problems"]), problem_texts(api)


def test_a_gap_in_the_change_records_is_a_problem_and_gc_then_removes_no_blob(populated, mr):
    populated.rm("resnet:v0", force=True)  # v0's model.bin is now unreferenced
    records(populated, "resnet")[1].unlink()
    api, _ = check(populated, mr)
    assert any("change record 1 is missing" in p["message"] for p in api["problems"]), problem_texts(api)
    before = sorted(p.name for d in (populated.path / "objects").iterdir() for p in d.iterdir())
    gc = mr("gc", "--grace", "0", "--json")
    assert gc.returncode == 0 and json.loads(gc.stdout)["blobs"] == 0
    assert "no blob was removed" in gc.stderr
    assert sorted(p.name for d in (populated.path / "objects").iterdir() for p in d.iterdir()) == before


def test_a_removed_manifest_is_a_problem_and_gc_then_removes_no_blob(populated, mr):
    populated.rm("resnet:v0", force=True)
    manifest_of(populated, "resnet", 1).unlink()
    api, _ = check(populated, mr)
    [problem] = api["problems"]
    assert problem["kind"] == "manifest" and problem["object"] == "resnet:v1" and "missing" in problem["message"]
    assert api["reclaimable"] == []  # the missing manifest could name any blob
    assert populated.gc(grace=0).blobs == 0


def test_a_manifest_whose_bytes_changed_is_a_problem(populated, mr):
    path = manifest_of(populated, "resnet", 0)
    data = json.loads(path.read_text())
    data["description"] = "rewritten by hand"
    path.write_text(json.dumps(data))
    api, _ = check(populated, mr)
    assert [(p["kind"], p["object"]) for p in api["problems"]] == [("manifest", "resnet:v0")]
    assert "does not match its name" in api["problems"][0]["message"]


def test_a_repointed_file_entry_is_a_problem_worded_by_fsck(populated, mr):
    path = manifest_of(populated, "resnet", 0)
    other = blob_of(populated, "resnet:v1", "model.bin")
    data = json.loads(path.read_text())
    entry = next(f for f in data["files"] if f["path"] == "model.bin")
    entry["digest"] = other.parent.name + other.name  # nothing recomputed: digest, name stay
    path.write_text(json.dumps(data))
    api, _ = check(populated, mr)
    messages = [p["message"] for p in api["problems"] if p["object"] == "resnet:v0"]
    assert any("is not the digest of its files" in m for m in messages), messages
    assert any("does not match its name" in m for m in messages), messages
    # whatever the damage, a blob that a live manifest names stays
    populated.gc(grace=0)
    assert other.exists()


def test_a_snapshot_ahead_of_the_records_is_a_problem(populated, mr):
    path = cdir(populated, "resnet") / "snapshot.json"
    data = json.loads(path.read_text())
    data["seq"] += 5
    path.write_text(json.dumps(data))
    api, _ = check(populated, mr)
    [problem] = api["problems"]
    assert problem["kind"] == "snapshot" and problem["object"] == P + "resnet/snapshot.json"
    assert "remove it and it is rebuilt" in problem["message"]
    path.unlink()
    assert check(populated, mr)[0]["ok"]


def test_a_snapshot_that_disagrees_with_its_records_is_a_problem(populated, mr):
    path = cdir(populated, "resnet") / "snapshot.json"
    data = json.loads(path.read_text())
    data["aliases"] = {"best": 1}
    path.write_text(json.dumps(data))
    api, _ = check(populated, mr)
    assert [p["kind"] for p in api["problems"]] == ["snapshot"]
    assert "does not match" in api["problems"][0]["message"]


def test_an_alias_at_a_deleted_version_by_a_hand_written_record_is_a_problem(populated, mr):
    populated.alias("resnet:v1", ["prod"])
    populated.rm("resnet:v1", force=True)  # removes the alias with it
    append_record(populated, "resnet", aliases={"best": 0, "prod": 1})
    (cdir(populated, "resnet") / "snapshot.json").unlink()
    api, _ = check(populated, mr)
    assert ("alias", "resnet:prod") in [(p["kind"], p["object"]) for p in api["problems"]]
    assert any("v1, which was deleted" in m for m in problem_texts(api))
    append_record(populated, "resnet", aliases={"best": 0, "prod": 9})
    api, _ = check(populated, mr)
    assert any("v9, which does not exist" in m for m in problem_texts(api))


def test_a_collection_without_its_name_claim_and_a_bad_claim_are_problems(populated, mr):
    (populated.path / "names/local/default/classifier.json").unlink()
    claim = populated.path / "names/local/default/resnet.json"
    claim.write_text(json.dumps({"format": 2, "name": "other", "kind": "artifact"}))
    api, _ = check(populated, mr)
    texts = problem_texts(api)
    assert any("has no name claim" in t and "classifier" in t for t in texts), texts
    assert any(t.startswith("collection names/local/default/resnet.json") for t in texts), texts


def test_missing_writable_and_corrupt_blobs_of_live_versions_are_problems(populated, mr):
    missing = blob_of(populated, "resnet:v1", "model.bin")
    corrupt = blob_of(populated, "resnet:v0", "model.bin")
    missing.unlink()
    os.chmod(corrupt, 0o644)
    corrupt.write_bytes(b"x" * len(b"weights-a" * 50))
    api, _ = check(populated, mr)
    by_object: dict[str, str] = {}
    for p in api["problems"]:
        by_object[p["object"]] = by_object.get(p["object"], "") + p["message"] + "\n"
    assert "missing from the store" in by_object[missing.parent.name + missing.name]
    assert "resnet:v1 (model.bin)" in by_object[missing.parent.name + missing.name]
    assert "writable" in by_object[corrupt.parent.name + corrupt.name]
    quick = json.loads(mr("fsck", "--quick", "--json").stdout)
    assert not any("content does not match" in p["message"] for p in quick["problems"])  # sizes only
    assert any("content does not match" in p["message"] for p in api["problems"])


def test_a_dangling_link_is_listed_apart_not_a_problem(populated, mr):
    populated.rm("resnet:v1", force=True)
    api, _ = check(populated, mr)
    assert api["ok"] and api["dangling"] == [{"link": "classifier:v0", "source": "resnet:v1"}]
    assert "dangling" in mr("fsck").stderr


# -- leftovers: listed by fsck, removed by gc --grace 0 -------------------------------


def make_leftovers(reg: Registry) -> dict[str, str]:
    """One of every kind, made by hand as a killed writer would leave it: kind -> object."""
    pid = dead_pid()
    made = {}
    reg.rm("resnet:v0", force=True)
    blob = next(p for p in (reg.path / "objects").rglob("*") if p.is_file() and p.stat().st_size == 450
                and p.read_bytes().startswith(b"weights-a"))
    made["blob"] = str(blob.relative_to(reg.path))
    orphan = cdir(reg, "resnet") / "manifests" / ("ab" * 32 + ".json")
    orphan.write_text('{"format": 2}')
    made["manifest"] = str(orphan.relative_to(reg.path))
    temp = reg.path / "tmp" / f"rec_{socket.gethostname()}_{pid}_abcdef"
    temp.write_bytes(b"x" * 100)
    made["tmp"] = "tmp/" + temp.name
    lock = cdir(reg, "resnet") / "snapshot.json.lock"
    lock.write_bytes(lock_record(pid))
    made["lock"] = str(lock.relative_to(reg.path))
    (reg.path / "locks" / "config.lock").write_bytes(lock_record(pid))
    # a link cut short between its two records: "linked into" committed, no link behind it
    append_record(reg, "resnet", marks=[{"version": 1, "link": "local/default/detector"}])
    made["mark"] = "resnet:v1 -> local/default/detector"
    return made


def test_every_leftover_kind_is_reclaimable_and_gc_grace_0_removes_it(populated, mr):
    made = make_leftovers(populated)
    api, cli = check(populated, mr)
    assert api["ok"], problem_texts(api)
    listed = {(r["kind"], r["object"]) for r in api["reclaimable"]}
    assert {(k, v) for k, v in made.items()} <= listed
    assert ("lock", "locks/config.lock") in listed
    human = mr("fsck")
    assert human.returncode == 0 and "reclaimable by `modelreg gc`" in human.stdout
    assert populated.collection(populated.parse("resnet").collection).marks() == {
        1: ["local/default/classifier", "local/default/detector"]}

    # young: the grace period keeps all but dead holders' locks (they have no age to wait for)
    young = json.loads(mr("gc", "--grace", "1h", "--json").stdout)
    assert {r["kind"] for r in young["removed"]} == {"lock"} and young["blobs"] == 0
    assert (cdir(populated, "resnet") / "manifests" / ("ab" * 32 + ".json")).exists()

    dry = json.loads(mr("gc", "--dry-run", "--grace", "0", "--json").stdout)
    assert dry["dry_run"] and {(r["kind"], r["object"]) for r in dry["removed"]} == {
        (k, v) for k, v in made.items() if k != "lock"}
    def bag(items):  # not the messages: a temp file's tells its age, which may have grown a second
        return sorted((x["kind"], x["object"], x["bytes"]) for x in items)

    assert bag(check(populated, mr)[0]["reclaimable"]) == bag(dry["removed"])  # dry run removed nothing

    done = json.loads(mr("gc", "--grace", "0", "--json").stdout)
    assert (done["blobs"], done["tmp"], done["dry_run"]) == (1, 1, False)
    assert {(r["kind"], r["object"]) for r in done["removed"]} == {(k, v) for k, v in made.items() if k != "lock"}
    after, _ = check(populated, mr)
    assert after["ok"] and after["reclaimable"] == []
    for key in ("manifest", "tmp", "blob"):
        assert not (populated.path / made[key]).exists()
    # the mark went by a change record of its own, with no event in the history
    assert populated.collection(populated.parse("resnet").collection).marks() == {1: ["local/default/classifier"]}
    assert [e["event"] for e in populated.history("resnet")].count("deleted") == 1
    # the real link's mark stays: rm of its source is still refused
    ru.assert_error(mr("rm", "resnet:v1"), 4, "linked from classifier:v0")
    assert populated.pull("classifier:v0", populated.path.parent / "out").files == 2


def test_gc_keeps_every_blob_of_live_versions_and_removes_deleted_ones(populated, mr, tmp_path):
    c = make_tree(tmp_path / "c", {"model.bin": b"weights-c" * 50, "config.json": "{}\n"})
    populated.log(c, "other")
    live = {f.digest for ref in ("resnet:v0", "resnet:v1", "other:v0") for f in populated.resolve(ref).files}
    gone = blob_of(populated, "other:v0", "model.bin")
    populated.rm("other:v0")
    result = mr("gc", "--grace", "0", "--json")
    assert json.loads(result.stdout)["blobs"] == 1 and not gone.exists()
    for digest in live - {gone.parent.name + gone.name}:
        assert populated.store.blob_path(digest).exists()
    assert populated.pull("resnet:v0", tmp_path / "o0").files == 2
    assert populated.pull("classifier:v0", tmp_path / "o1").files == 2
    assert check(populated, mr)[0]["ok"]


def test_a_manifest_that_does_not_parse_keeps_every_digest_it_mentions(populated, mr):
    blob = blob_of(populated, "resnet:v0", "model.bin")
    path = manifest_of(populated, "resnet", 0)
    path.write_text(path.read_text()[:-30])  # cut: no longer JSON
    api, _ = check(populated, mr)
    assert any(p["object"] == "resnet:v0" for p in api["problems"])
    assert not any(r["kind"] == "blob" for r in api["reclaimable"])
    assert mr("gc", "--grace", "0").returncode == 0
    assert blob.exists()


def test_gc_takes_the_format2_lock_and_leaves_the_format1_one(populated):
    populated.rm("resnet:v0", force=True)
    assert populated.gc_lock.name == "gc-2.lock"
    (populated.path / "locks" / "gc-2.lock").write_bytes(lock_record(dead_pid()))  # stale: broken
    assert populated.gc(grace=0).blobs == 1
    assert not (populated.path / "locks" / "gc-2.lock").exists()
    assert not (populated.path / "locks" / "gc.lock").exists()


# -- format 1 --------------------------------------------------------------------------


def test_format1_registry_fsck_reads_it_gc_is_refused_and_after_upgrade_all_is_clean(tmp_path, mr, monkeypatch):
    from format1_util import release_010, run_010

    src = release_010(tmp_path / "old")
    work = tmp_path / "proj"
    make_tree(work / "a", {"w": "a"})
    make_tree(work / "b", {"w": "b"})
    root = work / ".modelreg"
    env = ru.env_for(root)
    for args in (("init", work), ("log", "a", "-n", "m", "-a", "best"), ("log", "b", "-n", "m"),
                 ("link", "m:v1", "reg"), ("rm", "m:v0", "--force")):
        run_010(src, *args, cwd=work, env=env)
    monkeypatch.setenv("MODELREG_DIR", str(root))
    old = Registry.open(root)
    assert old.format == 1
    doc = json.loads(mr("fsck", "--json").stdout)
    assert doc["ok"] and doc["checked"]["versions"] == 1 and doc["checked"]["links"] == 1
    assert [r["kind"] for r in doc["reclaimable"]] == ["blob"]  # m:v0's blob
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    ru.assert_error(mr("gc", "--grace", "0"), 4, "modelreg upgrade")
    ru.assert_error(mr("gc", "--dry-run"), 4, "modelreg upgrade")
    ru.assert_error(mr("gc", "--grace", "1y"), 2, "invalid duration")  # usage is checked first
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before  # nothing written

    assert mr("upgrade", "-q").returncode == 0
    # the upgrade's guards (gc.lock, collection.lock) and format 1's files are no findings
    doc = json.loads(mr("fsck", "--json").stdout)
    assert doc["ok"], doc["problems"]
    assert [r["kind"] for r in doc["reclaimable"]] == ["blob"]
    assert json.loads(mr("gc", "--grace", "0", "--json").stdout)["blobs"] == 1
    doc = json.loads(mr("fsck", "--json").stdout)
    assert doc["ok"] and doc["reclaimable"] == [] and doc["checked"]["versions"] == 1
    assert (root / "locks" / "gc.lock").exists()  # still keeping 0.1.0 out


def test_symlink_locks_live_ones_are_kept_dead_ones_listed_and_removed(populated, mr):
    """The full-disk form of a lock: a symlink whose target names the holder."""
    from modelreg.locks import _process_start

    me = os.getpid()
    live = populated.path / "locks" / "config.lock"
    os.symlink(f"mrlock:{socket.gethostname()}:{me}:{_process_start(me)}:{int(time.time())}", live)
    dead = cdir(populated, "resnet") / "snapshot.json.lock"
    os.symlink(f"mrlock:{socket.gethostname()}:{dead_pid()}::{int(time.time())}", dead)
    api, _ = check(populated, mr)
    assert [(r["kind"], r["object"]) for r in api["reclaimable"]] == [("lock", P + "resnet/snapshot.json.lock")]
    done = json.loads(mr("gc", "--grace", "0", "--json").stdout)
    assert done["locks"] == 1 and not os.path.lexists(dead) and os.path.lexists(live)


@pytest.mark.parametrize("link", ["../../../etc", "local/default", "local/default/x/y", "local/default/.."])
def test_a_mark_naming_no_valid_model_is_a_leftover_and_gc_leaves_collections_alone(populated, mr, link):
    append_record(populated, "resnet", marks=[{"version": 0, "link": link}])
    api, _ = check(populated, mr)
    assert api["ok"] and [(r["kind"], r["object"]) for r in api["reclaimable"]] == [("mark", f"resnet:v0 -> {link}")]
    human = mr("gc", "--grace", "0")
    assert human.returncode == 0 and human.stdout == 'removed 0 blobs (0 B), 1 "linked into" mark\n'
    assert populated.collection(populated.parse("resnet").collection).marks() == {1: ["local/default/classifier"]}
    assert check(populated, mr)[0]["reclaimable"] == []


def test_gc_says_what_it_removed_besides_blobs(populated, mr):
    (cdir(populated, "classifier") / "manifests" / ("cd" * 32 + ".json")).write_text("{}")
    assert mr("gc", "--grace", "1h").stdout == "nothing to remove\n"
    assert mr("gc", "--grace", "0").stdout == "removed 0 blobs (2 B), 1 unnamed manifest\n"  # bytes: all removed


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a\\b", "sub/../x", ".modelreg/config.toml", "a\nb"])
def test_an_unsafe_path_in_a_manifest_is_a_problem_and_its_blobs_stay(populated, mr, path):
    manifest = manifest_of(populated, "resnet", 0)
    data = json.loads(manifest.read_text())
    data["files"][0]["path"] = path
    manifest.write_text(json.dumps(data))
    blobs = {f["digest"] for f in data["files"]}
    api, _ = check(populated, mr)
    assert ("manifest", "resnet:v0") in [(p["kind"], p["object"]) for p in api["problems"]]
    assert mr("gc", "--grace", "0").returncode == 0
    assert all(populated.store.blob_path(d).exists() for d in blobs)
