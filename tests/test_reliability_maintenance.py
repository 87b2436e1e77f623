"""fsck and gc in-process: what counts as a problem, what is reclaimable, what gc removes."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from reliability_util import dead_pid, lock_record

from conftest import make_tree
from modelreg import Registry
from modelreg.errors import InvalidInput, LockTimeout
from modelreg.locks import WriterRegistration






@pytest.fixture
def reg(isolated_env) -> Registry:
    Registry.init(isolated_env).config_set("core.fsync", "false")  # durability is not what these test
    return Registry.open(isolated_env)


@pytest.fixture
def populated(reg, tmp_path):
    """resnet v0, v1 (v1 shares a blob with v0), a registered model linking v1, aliases."""
    a = make_tree(tmp_path / "a", {"model.bin": b"weights-a" * 50, "config.json": "{}\n"})
    b = make_tree(tmp_path / "b", {"model.bin": b"weights-b" * 50, "config.json": "{}\n"})
    reg.log(a, "resnet", aliases=["best"])
    reg.log(b, "resnet")
    reg.link("resnet:v1", "classifier", aliases=["staging"])
    return reg


def blob_of(reg: Registry, ref: str, path: str) -> Path:
    entry = next(f for f in reg.resolve(ref).files if f.path == path)
    return reg.store.blob_path(entry.digest)


def coll_dir(reg: Registry, name: str) -> Path:
    return reg.path / "collections" / "local" / "default" / name


def rewrite_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def kinds(result) -> list[tuple[str, str]]:
    return [(p.kind, p.object) for p in result.problems]


# -- a healthy registry -----------------------------------------------------------------


def test_fsck_clean_registry(populated):
    result = populated.fsck()
    assert result.ok and result.problems == () and result.reclaimable == ()
    doc = result.to_json()
    assert doc["ok"] is True and doc["problems"] == [] and doc["reclaimable"] == []
    assert doc["checked"]["versions"] == 2 and doc["checked"]["links"] == 1
    assert doc["checked"]["blobs"] == 3  # config.json is shared
    assert populated.fsck(quick=True).ok


def test_fsck_empty_registry(reg):
    assert reg.fsck().ok


# -- blobs ------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend"])
def test_fsck_names_a_corrupt_blob_and_its_versions(populated, damage):
    blob = blob_of(populated, "resnet:v0", "model.bin")
    data = bytearray(blob.read_bytes())
    if damage == "flip":
        data[10] ^= 0x01
    elif damage == "truncate":
        data = data[:-1]
    else:
        data += b"x"
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    os.chmod(blob, 0o444)
    result = populated.fsck()
    assert not result.ok
    [problem] = result.problems
    assert problem.kind == "blob" and problem.object == blob.parent.name + blob.name
    assert "resnet:v0 (model.bin)" in problem.message
    quick = populated.fsck(quick=True)
    assert quick.ok == (damage == "flip")  # --quick checks sizes only


def test_fsck_reports_writable_and_missing_blobs(populated):
    writable = blob_of(populated, "resnet:v0", "model.bin")
    os.chmod(writable, 0o644)
    missing = blob_of(populated, "resnet:v1", "model.bin")
    missing.unlink()
    problems = {(p.object, p.message.split(";")[0]) for p in populated.fsck().problems}
    digest_w = writable.parent.name + writable.name
    digest_m = missing.parent.name + missing.name
    assert any(obj == digest_w and "writable" in msg for obj, msg in problems)
    assert any(obj == digest_m and "missing" in msg for obj, msg in problems)
    text = " ".join(p.message for p in populated.fsck().problems)
    assert "resnet:v1 (model.bin)" in text and "classifier" not in text


def test_fsck_reports_stray_files_in_objects(populated):
    (populated.path / "objects" / "zz").mkdir()
    (populated.path / "objects" / "ab").mkdir(exist_ok=True)
    (populated.path / "objects" / "ab" / "notablob").write_text("x")
    objects = {p.object for p in populated.fsck().problems}
    assert objects == {"objects/zz", "objects/ab/notablob"}


# -- manifests, links, tombstones -------------------------------------------------------


def manifest_path(reg: Registry, name: str, number: int) -> Path:
    summary = reg.collection(reg.parse(name).collection).state()["versions"][number]
    return coll_dir(reg, name) / "manifests" / f"{summary['manifest']}.json"


def change_path(reg: Registry, name: str, seq: int) -> Path:
    return coll_dir(reg, name) / "changes" / f"{seq:012d}.json"


def rewrite_record(reg: Registry, name: str, seq: int, change) -> None:
    """Change a change record by hand; the snapshot goes too, so that readers fold the records."""
    rewrite_json(change_path(reg, name, seq), change)
    (coll_dir(reg, name) / "snapshot.json").unlink(missing_ok=True)


def append_record(reg: Registry, name: str, **fields) -> None:
    seq = len(list((coll_dir(reg, name) / "changes").iterdir()))
    state = reg.collection(reg.parse(name).collection).state(fresh=True)
    record = {"format": 2, "seq": seq, "txid": "t" * 32, "time": "2026-01-01T00:00:00.000000Z", "events": [],
              "aliases": state["aliases"], **fields}
    change_path(reg, name, seq).write_text(json.dumps(record))


def test_fsck_reports_a_manifest_whose_digest_does_not_match_its_files(populated):
    other = blob_of(populated, "resnet:v1", "model.bin")
    rewrite_json(manifest_path(populated, "resnet", 0),
                 lambda d: d["files"][1].update(digest=other.parent.name + other.name))
    result = populated.fsck()
    assert ("manifest", "resnet:v0") in kinds(result)
    assert any("not the digest of its files" in p.message for p in result.problems)


def test_fsck_reports_unparseable_and_misplaced_records(populated):
    change_path(populated, "resnet", 1).write_text("{not json")
    (coll_dir(populated, "resnet") / "changes" / "01.json").write_text("{}")
    result = populated.fsck()
    objects = {p.object for p in result.problems}
    assert "collections/local/default/resnet/changes/000000000001.json" in objects
    assert any("unexpected file in changes/" in p.message for p in result.problems)


def test_fsck_reports_gaps_in_change_records(populated):
    os.rename(change_path(populated, "resnet", 1), change_path(populated, "resnet", 3))
    result = populated.fsck()
    assert any("change record 1 is missing" in p.message for p in result.problems)


def test_dangling_link_is_a_state_not_a_problem(populated):
    populated.rm("resnet:v1", force=True)
    result = populated.fsck()
    assert result.ok, result.problems
    assert result.dangling == (("classifier:v0", "resnet:v1"),)
    assert result.to_json()["dangling"] == [{"link": "classifier:v0", "source": "resnet:v1"}]


def test_link_whose_source_changed_is_a_problem(populated):
    rewrite_record(populated, "classifier", 0, lambda d: d["add"]["0"].update(digest="0" * 64))
    assert ("link", "classifier:v0") in kinds(populated.fsck())


def test_link_to_a_version_that_never_existed_is_a_problem(populated):
    rewrite_record(populated, "classifier", 0, lambda d: d["add"]["0"]["source"].update(version=7))
    result = populated.fsck()
    assert ("link", "classifier:v0") in kinds(result)
    assert any("never existed" in p.message for p in result.problems)


def test_bad_deletion_record_is_reported(populated):
    populated.rm("resnet:v0", force=True)
    last = len(list((coll_dir(populated, "resnet") / "changes").iterdir())) - 1
    rewrite_record(populated, "resnet", last, lambda d: d.update(delete=["v0"]))
    assert any(p.kind == "record" for p in populated.fsck().problems)


def test_duplicate_live_content_is_reported(populated):
    state = populated.collection(populated.parse("resnet").collection).state(fresh=True)
    append_record(populated, "resnet", add={"2": state["versions"][0]}, next=3)
    assert any("hold the same files" in p.message for p in populated.fsck().problems)


def test_name_claim_problems(populated):
    (populated.path / "names/local/default/classifier.json").write_text("[]")
    (populated.path / "names/local/default/resnet.json").unlink()
    found = kinds(populated.fsck())
    assert ("collection", "names/local/default/classifier.json") in found and ("collection", "resnet") in found


def test_interrupted_collection_creation_is_harmless(populated):
    (coll_dir(populated, "half") / "changes").mkdir(parents=True)  # no record yet
    claim = populated.path / "names/local/default/half2.json"
    claim.write_text(json.dumps({"format": 2, "name": "half2", "kind": "artifact", "created": ""}))
    assert populated.fsck().ok


# -- aliases ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,number,expected", [
    ("ghost", 9, "does not exist"),
    ("latest", 0, "not a valid alias name"),
    ("v3", 0, "not a valid alias name"),
    ("BEST", 0, "only by case"),
])
def test_alias_problems(populated, name, number, expected):
    append_record(populated, "resnet", aliases={"best": 0, name: number})
    result = populated.fsck()
    assert [p.kind for p in result.problems] == ["alias"]
    assert expected in result.problems[0].message and name.lower() in result.problems[0].object.lower()


def test_alias_to_a_deleted_version_is_a_problem(populated):
    populated.rm("resnet:v0", force=True)
    append_record(populated, "resnet", aliases={"best": 0})
    assert any("was deleted" in p.message for p in populated.fsck().problems)


# -- leftovers and gc -------------------------------------------------------------------


def test_leftovers_are_reclaimable_not_problems_and_gc_removes_them(populated):
    root = populated.path
    populated.rm("resnet:v0", force=True)
    pid = dead_pid()
    (root / "tmp" / f"blob-{pid}-abcdef").write_bytes(b"x" * 100)
    (coll_dir(populated, "resnet") / "snapshot.json.lock").write_bytes(lock_record(pid))
    (root / "locks" / "gc-2.lock.break").write_bytes(lock_record(pid))
    (root / "locks" / "writers" / f"{socket.gethostname()}-{pid}-0000").write_bytes(lock_record(pid))
    result = populated.fsck()
    assert result.ok, result.problems
    assert sorted(r.kind for r in result.reclaimable) == ["blob", "lock", "lock", "lock", "tmp"]
    assert result.reclaimable_bytes == 100 + len(b"weights-a" * 50)

    dry = populated.gc(dry_run=True, grace=0)
    assert (dry.blobs, dry.tmp, dry.locks, dry.dry_run) == (1, 1, 3, True)
    # nothing deleted (messages aside: a temp file's tells its age, which may have grown a second)
    assert [(r.kind, r.object, r.bytes) for r in populated.fsck().reclaimable] == \
        [(r.kind, r.object, r.bytes) for r in result.reclaimable]

    done = populated.gc(grace=0)
    assert (done.blobs, done.tmp, done.locks, done.dry_run) == (1, 1, 3, False)
    assert done.bytes == result.reclaimable_bytes
    after = populated.fsck()
    assert after.ok and after.reclaimable == ()
    # what is still live is intact
    assert populated.pull("resnet:v1", populated.path.parent / "out").files == 2


def test_gc_respects_the_grace_period(populated):
    populated.rm("resnet:v0", force=True)
    assert populated.gc().blobs == 0  # default 24h: the blob is young
    assert populated.gc(grace="1h").blobs == 0
    blob = blob_of(populated, "resnet:v1", "config.json")  # shared with v0: stays
    old = time.time() - 7200
    for digest, path in populated.store.iter_blobs():
        os.utime(path, (old, old))
    result = populated.gc(grace="1h")
    assert result.blobs == 1 and blob.exists()


def test_gc_grace_from_config_and_bad_values(populated):
    populated.config_set("gc.grace", "0")
    populated.rm("resnet:v0", force=True)
    assert Registry.open(populated.path).gc().blobs == 1
    with pytest.raises(InvalidInput):
        populated.gc(grace="soon")
    with pytest.raises(InvalidInput):
        populated.gc(grace=-1)


def test_gc_keeps_tmp_files_of_running_processes(populated):
    mine = populated.path / "tmp" / f"rec-{os.getpid()}-abcdef"
    mine.write_bytes(b"in flight")
    assert populated.gc(grace=0).tmp == 0 and mine.exists()
    assert populated.fsck().reclaimable == ()


def test_gc_keeps_blobs_an_unparseable_manifest_mentions(populated):
    blob = blob_of(populated, "resnet:v0", "model.bin")
    path = manifest_path(populated, "resnet", 0)
    path.write_text(path.read_text()[:-20])  # cut: no longer JSON
    populated.gc(grace=0)
    assert blob.exists()


def test_gc_waits_for_live_writers_then_gives_up(populated, monkeypatch):
    import modelreg.maintenance as maintenance

    monkeypatch.setattr(maintenance, "GC_WRITER_WAIT", 0.3)
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "0.1")
    populated.rm("resnet:v0", force=True)
    with WriterRegistration(populated.path / "locks", populated.gc_lock.name):
        with pytest.raises(LockTimeout):
            populated.gc(grace=0)
    assert not (populated.path / "locks" / "gc-2.lock").exists()
    assert populated.fsck().reclaimable  # nothing was removed


def test_gc_proceeds_once_the_writer_is_done(populated, monkeypatch):
    populated.rm("resnet:v0", force=True)
    writer = WriterRegistration(populated.path / "locks", populated.gc_lock.name).__enter__()
    timer = threading.Timer(0.3, writer.__exit__, (None, None, None))
    timer.start()
    started = time.monotonic()
    assert populated.gc(grace=0).blobs == 1
    assert time.monotonic() - started >= 0.25
    timer.join()


def test_writer_waits_while_gc_holds_its_lock(populated, tmp_path):
    gc_lock = populated.path / "locks" / "gc-2.lock"
    gc_lock.write_bytes(lock_record(os.getpid()))
    threading.Timer(0.3, gc_lock.unlink).start()
    started = time.monotonic()
    populated.log(make_tree(tmp_path / "c", {"f": "c"}), "other")
    assert time.monotonic() - started >= 0.25


def test_stale_gc_lock_is_broken_by_the_next_gc(populated):
    (populated.path / "locks" / "gc-2.lock").write_bytes(lock_record(dead_pid()))
    populated.rm("resnet:v0", force=True)
    assert populated.gc(grace=0).blobs == 1
    assert not (populated.path / "locks" / "gc-2.lock").exists()


# -- the commands -----------------------------------------------------------------------


@pytest.fixture
def mr(script_runner):
    from reliability_util import mr_runner

    return mr_runner(script_runner)


def test_fsck_command_modes_and_exit_codes(populated, mr):
    import reliability_util as ru

    doc = json.loads(mr("fsck", "--json").stdout)
    assert doc["ok"] is True and doc["problems"] == [] and doc["reclaimable"] == []
    quiet = mr("fsck", "-q")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert "no problems" in mr("fsck").stdout

    blob = blob_of(populated, "resnet:v0", "model.bin")
    os.chmod(blob, 0o644)
    digest = blob.parent.name + blob.name
    result = mr("fsck", "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and [p["object"] for p in doc["problems"]] == [digest]
    assert set(doc["problems"][0]) >= {"kind", "object", "message"}
    quiet = mr("fsck", "-q", "--quick")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (1, "", "")
    plain = mr("fsck", "--plain")
    assert plain.returncode == 1
    assert plain.stdout.split("\t")[:3] == ["problem", "blob", digest]
    human = mr("fsck")
    assert human.returncode == 1 and digest in human.stdout and "resnet:v0" in human.stdout
    ru.assert_error(mr("fsck", "--json", "--plain"), 2)


def test_gc_command_modes(populated, mr):
    import reliability_util as ru

    populated.rm("resnet:v0", force=True)
    dry = json.loads(mr("gc", "--dry-run", "--grace", "0", "--json").stdout)
    assert (dry["blobs"], dry["dry_run"]) == (1, True) and dry["bytes"] == len(b"weights-a" * 50)
    assert "unreferenced" in mr("fsck").stdout
    young = mr("gc")
    assert young.stdout == "nothing to remove\n" and "grace" in young.stderr
    quiet = mr("gc", "--grace", "0", "-q")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert json.loads(mr("gc", "--grace", "0", "--json").stdout) | {"removed": []} == {
        "blobs": 0, "bytes": 0, "dry_run": False, "tmp": 0, "locks": 0, "repaired": 0, "kept": 0, "grace": 0,
        "removed": []}
    ru.assert_error(mr("gc", "--grace", "1y"), 2, "invalid duration")
    ru.assert_error(mr("gc", "--grace", "-1"), 2)


def test_commands_without_a_registry(mr, isolated_env):
    import reliability_util as ru

    ru.assert_error(mr("fsck"), 3)
    ru.assert_error(mr("gc"), 3)


def test_fsck_beside_rm_and_gc_does_not_report_blobs_of_versions_deleted_meanwhile(populated, monkeypatch):
    import modelreg.maintenance as maintenance

    real = maintenance._Scan2.check_blobs

    def deleted_meanwhile(self):
        monkeypatch.setattr(maintenance._Scan2, "check_blobs", real)  # gc scans too: once is enough
        populated.rm("resnet:v0", force=True)  # after fsck read the manifests, before it scans blobs
        assert populated.gc(grace=0).blobs == 1
        real(self)

    monkeypatch.setattr(maintenance._Scan2, "check_blobs", deleted_meanwhile)
    assert populated.fsck().ok
