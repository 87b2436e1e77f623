"""Format 2's commit protocol on the storage interface, without the registry around it:
create-only change records, numbers given by records, a lost response recognised as a
win, case-folded name claims, snapshots that never move backward, and the same
behaviour on the filesystem, in memory and on a real S3 endpoint (moto on loopback)."""

from __future__ import annotations

import json
import threading

import pytest

from modelreg import layout
from modelreg.changes import Change, Collection, parse_change
from modelreg.errors import Conflict, IntegrityError
from modelreg.policy import remove_aliases, set_aliases
from modelreg.refs import CollectionId
from modelreg.storage import FsStorage, KeyMissing, LostResponse, MemoryStorage

DIGEST = "ab" * 32


@pytest.fixture(params=["memory", "fs", "s3"])
def storage(request, tmp_path):
    if request.param == "memory":
        return MemoryStorage()
    if request.param == "s3":
        pytest.importorskip("obstore", reason="the s3 extra is not installed")
        from modelreg.storage_s3 import ObjectStorage

        return ObjectStorage(f"s3://{request.getfixturevalue('s3_bucket')}/team/reg", timeout=10)
    (tmp_path / "reg" / "tmp").mkdir(parents=True)
    return FsStorage(tmp_path / "reg", fsync=False)


def cid(name="art"):
    return CollectionId("local", "default", name)


def add_version(digest=DIGEST, aliases=()):
    """A build function adding one version with `digest` (deduplicated) and aliases."""
    def build(state):
        for n, s in state["versions"].items():
            if s["digest"] == digest and not s.get("deleted"):
                return None, n
        number = state["next"]
        new, events = set_aliases(state["aliases"], number, list(aliases), protected=[], force=False)
        summary = {"manifest": "cd" * 32, "digest": digest, "size": 1, "files": 1, "created": "t", "metadata": {}}
        return Change(events=[{"event": "logged", "version": number}, *events], aliases=new,
                      add={str(number): summary}), number
    return build


def test_numbers_are_given_by_records_in_commit_order(storage):
    coll = Collection(storage, cid())
    coll.ensure("artifact")
    results = [coll.commit(add_version(f"{i:064x}"))[2] for i in range(3)]
    assert results == [0, 1, 2]
    keys = [item.key.rpartition("/")[2] for item in storage.list("collections/")
            if "/changes/" in item.key]
    assert keys == ["000000000000.json", "000000000001.json", "000000000002.json"]
    fresh = Collection(storage, cid())
    assert [s.version for s in fresh.live()] == [0, 1, 2]
    assert fresh.history()[0]["event"] == "logged"


def test_identical_content_is_one_version(storage):
    coll = Collection(storage, cid())
    coll.ensure("artifact")
    assert coll.commit(add_version())[2] == 0
    state, record, number = coll.commit(add_version())
    assert (number, record) == (0, None)


def test_a_writer_that_lost_the_race_rechecks_against_the_new_state(storage):
    a, b = Collection(storage, cid()), Collection(storage, cid())
    a.ensure("artifact")
    calls = []

    def build(state):
        calls.append(state["seq"])
        if len(calls) == 1:  # the other writer commits the same content in between
            a.commit(add_version())
        return add_version()(state)

    _, record, number = b.commit(build)
    assert calls == [-1, 0]
    assert (record, number) == (None, 0)  # the re-check found the version the other writer made


def test_a_lost_response_is_recognised_as_a_win():
    storage = MemoryStorage()
    coll = Collection(storage, cid())
    coll.ensure("artifact")
    storage.lose_next_create = True
    _, record, number = coll.commit(add_version(aliases=["best"]))
    assert number == 0 and record["seq"] == 0
    assert [s.version for s in Collection(storage, cid()).live()] == [0]
    assert Collection(storage, cid()).aliases() == {"best": 0}
    assert len([k for k in storage.objects if "/changes/" in k]) == 1


def test_two_racing_writers_one_losing_its_response_both_report_success():
    """Writer A's create of record 0 succeeds but its answer is lost; B then races for
    the next number. A must report success for record 0, B gets record 1."""
    storage = MemoryStorage()
    a, b = Collection(storage, cid()), Collection(storage, cid())
    a.ensure("artifact")
    real_create = storage.create

    def create(key, data):
        if key.endswith("/changes/000000000000.json") and not storage.objects.get(key):
            real_create(key, data)
            b.commit(add_version("11" * 32))  # B commits while A waits for its lost answer
            raise LostResponse("timed out")
        return real_create(key, data)

    storage.create = create
    _, record_a, number_a = a.commit(add_version("22" * 32))
    storage.create = real_create
    assert (record_a["seq"], number_a) == (0, 0)
    state = Collection(storage, cid()).state()
    assert sorted((n, s["digest"]) for n, s in state["versions"].items()) == [(0, "22" * 32), (1, "11" * 32)]


def test_parallel_writers_on_a_filesystem_get_distinct_numbers(tmp_path):
    (tmp_path / "reg" / "tmp").mkdir(parents=True)
    storage = FsStorage(tmp_path / "reg", fsync=False)
    Collection(storage, cid()).ensure("artifact")
    got, errors = [], []

    def writer(i):
        try:
            got.append(Collection(storage, cid()).commit(add_version(f"{i:064x}"))[2])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(got) == list(range(8))


def test_case_folded_claims_refuse_a_second_spelling(storage):
    Collection(storage, cid("Foo")).ensure("artifact")
    with pytest.raises(Conflict, match="only by case"):
        Collection(storage, cid("foo")).ensure("artifact")
    with pytest.raises(Conflict, match="already an artifact"):
        Collection(storage, cid("Foo")).ensure("registered")
    Collection(storage, cid("Foo")).ensure("artifact")  # the same name and kind: fine
    assert not Collection(storage, cid("foo")).exists()


def test_snapshot_never_moves_backward_and_a_bad_one_is_only_slower(storage):
    coll = Collection(storage, cid())
    coll.ensure("artifact")
    for i in range(3):
        coll.commit(add_version(f"{i:064x}"))
    key = layout.snapshot_key(coll.prefix)
    assert json.loads(storage.read(key))["seq"] == 2
    old = Collection(storage, cid())
    old._save_snapshot(layout.fold(layout.empty_state(), {"seq": 0, "add": {}, "aliases": {}}))
    assert json.loads(storage.read(key))["seq"] == 2  # not moved backward
    storage.put(key, b'{"format":2,"seq":')  # torn
    assert [s.version for s in Collection(storage, cid()).live()] == [0, 1, 2]
    storage.delete(key)
    assert [s.version for s in Collection(storage, cid()).live()] == [0, 1, 2]


def test_a_reader_applies_only_records_after_the_snapshot():
    storage = MemoryStorage()
    coll = Collection(storage, cid())
    coll.ensure("artifact")
    for i in range(20):
        coll.commit(add_version(f"{i:064x}"))
    storage.requests = 0
    assert len(Collection(storage, cid()).live()) == 20
    assert storage.requests <= 3  # snapshot, one listing of the records after it


def test_a_tampered_record_is_an_integrity_error(storage):
    coll = Collection(storage, cid())
    coll.ensure("artifact")
    coll.commit(add_version())
    storage.delete(layout.snapshot_key(coll.prefix))
    storage.put(layout.change_key(coll.prefix, 0), b'{"format":2,"seq":0,"txid":"x","aliases":{"a":"v1"}}')
    with pytest.raises(IntegrityError):
        Collection(storage, cid()).state()


def test_parse_change_refuses_a_record_under_another_number():
    raw = json.dumps({"format": 2, "seq": 3, "txid": "x", "events": []}).encode()
    with pytest.raises(IntegrityError, match="expected 4"):
        parse_change(raw, "collections/a/b/c/changes/000000000004.json")


def test_alias_policy_is_all_or_none_without_a_disk():
    current = {"production": 1, "best": 2}
    with pytest.raises(Conflict, match="protected"):
        set_aliases(current, 3, ["staging", "production"], protected=["production"], force=False)
    new, events = set_aliases(current, 3, ["staging", "production"], protected=["production"], force=True,
                              reason="better")
    assert new == {"production": 3, "best": 2, "staging": 3}
    assert [(e["event"], e.get("from"), e["reason"]) for e in events] == [
        ("alias-set", None, "better"), ("alias-moved", 1, "better")]
    with pytest.raises(Conflict, match="expected unset"):
        set_aliases(current, 3, ["best"], protected=[], force=False, expect="none")
    with pytest.raises(Conflict, match="clashes with existing alias"):
        set_aliases(current, 3, ["BEST"], protected=[], force=False)
    new, events = remove_aliases(current, ["best"], number=2, protected=[], force=False)
    assert new == {"production": 1} and events[0]["from"] == 2
    with pytest.raises(Conflict):
        remove_aliases(current, ["production"], number=None, protected=["production"], force=False)


def test_missing_key_is_keymissing(storage):
    with pytest.raises(KeyMissing):
        storage.read("nothing/here")
    assert storage.create("a/b", b"1") and not storage.create("a/b", b"2")
    assert storage.read("a/b") == b"1"
    data, token = storage.read_token("a/b")
    assert storage.replace("a/b", b"3", token)
    assert not storage.replace("a/b", b"4", token)  # the token is stale now
    assert storage.read("a/b") == b"3"
