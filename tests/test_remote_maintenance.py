"""fsck and gc on a registry at an s3:// URL (SPEC §7), against a real S3 endpoint on
loopback (moto_server): the damage fsck names, what gc removes and keeps, and the lease
handshake that keeps gc from deleting what an in-flight writer is about to reference.

Each "machine" has its own working dir, HOME, XDG_CONFIG_HOME and XDG_CACHE_HOME; the
damage is done with boto3, behind modelreg's back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_tree

pytest.importorskip("obstore", reason="the s3 extra is not installed")

import modelreg  # noqa: E402
from modelreg import remote_maintenance  # noqa: E402
from modelreg.errors import LockTimeout  # noqa: E402


class Machine:
    """One user on one machine, running the installed command as real processes."""

    def __init__(self, base: Path, name: str, url: str) -> None:
        self.url = url
        self.work = base / f"{name}-work"
        home = base / f"{name}-home"
        for d in (self.work, home):
            d.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
                    "XDG_CACHE_HOME": str(home / "cache"), "USER": name, "LOGNAME": name,
                    "PYTHONPATH": os.pathsep.join(p for p in [str(Path(modelreg.__file__).parent.parent),
                                                             os.environ.get("PYTHONPATH")] if p),
                    "MODELREG_LOCK_TIMEOUT": "120"}

    def argv(self, *args) -> list[str]:
        return [sys.executable, "-m", "modelreg", "--root", self.url, *map(str, args)]

    def run(self, *args, env=None) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), cwd=self.work, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=300)

    def start(self, *args, env=None) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), cwd=self.work, env={**self.env, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ok(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def failed(result, code: int):
    """SPEC §4: the exit code, stdout empty, one error line (and an optional hint) after
    any notes made while it waited."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("modelreg: error: ")]
    assert len(errors) == 1, lines
    assert all(line.startswith("hint: ") for line in lines[errors[0] + 1:]), lines
    return result


@pytest.fixture
def url(s3_bucket):
    return f"s3://{s3_bucket}/team/reg"


@pytest.fixture
def reg(url):
    return modelreg.Registry.init(url)


@pytest.fixture
def bucket(s3_endpoint, s3_bucket):
    """boto3 on the test bucket, for damage done behind modelreg's back."""
    client = s3_endpoint.client()

    class Bucket:
        name = s3_bucket

        def keys(self, prefix="team/reg/") -> dict[str, int]:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket, Prefix=prefix)
            return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

        def get(self, key) -> bytes:
            return client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()

        def put(self, key, data: bytes) -> None:
            client.put_object(Bucket=s3_bucket, Key=key, Body=data)

        def delete(self, key) -> None:
            client.delete_object(Bucket=s3_bucket, Key=key)

    return Bucket()


def blob(digest: str) -> str:
    return f"team/reg/objects/{digest[:2]}/{digest[2:]}"


def digests(reg, ref: str) -> dict[str, str]:
    return {f.path: f.digest for f in reg.show(ref).files}


@pytest.fixture
def populated(reg, tmp_path):
    """resnet v0 (best), v1 (shares config.json with v0), classifier v0 -> resnet:v1."""
    a = make_tree(tmp_path / "a", {"model.bin": b"weights-a" * 500, "config.json": "{}\n", "x/notes": "a\n"})
    b = make_tree(tmp_path / "b", {"model.bin": b"weights-b" * 500, "config.json": "{}\n", "x/notes": "b\n"})
    reg.log(a, "resnet", aliases=["best"])
    reg.log(b, "resnet")
    reg.link("resnet:v1", "classifier", aliases=["staging"])
    return reg


# -- fsck ------------------------------------------------------------------------------


def test_fsck_is_ok_on_a_sound_remote_registry(populated, url, mr):
    for quick in (False, True):
        result = populated.fsck(quick=quick)
        assert result.ok and not result.problems and not result.reclaimable, result
        assert result.checked["versions"] == 2 and result.checked["links"] == 1
        assert result.checked["blobs"] == 5  # config.json is shared
    for args in (["fsck", "--json"], ["fsck", "--quick", "--json"]):
        out = mr("--root", url, *args)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["ok"] is True and doc["problems"] == [] and doc["reclaimable"] == []
    assert mr("--root", url, "fsck", "-q").stdout == ""


def test_quick_fsck_names_a_deleted_and_a_truncated_blob(populated, url, bucket, mr):
    v0, v1 = digests(populated, "resnet:v0"), digests(populated, "resnet:v1")
    gone, short = v0["model.bin"], v1["x/notes"]
    bucket.delete(blob(gone))
    bucket.put(blob(short), b"b")  # one byte of two
    result = populated.fsck(quick=True)
    assert not result.ok
    named = {p.object: p.message for p in result.problems if p.kind == "blob"}
    assert set(named) == {gone, short}, result.problems
    assert "missing" in named[gone] and "resnet:v0" in named[gone]
    assert "size 1, expected 2" in named[short] and "resnet:v1" in named[short]
    out = mr("--root", url, "fsck", "--quick", "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["ok"] is False and {p["object"] for p in doc["problems"]} == {gone, short}
    human = mr("--root", url, "fsck", "--quick")
    assert human.returncode == 1 and gone in human.stdout and short in human.stdout


def test_full_fsck_rehashes_and_finds_a_same_size_change_that_quick_misses(populated, url, bucket, mr):
    digest = digests(populated, "resnet:v0")["model.bin"]
    original = bucket.get(blob(digest))
    bucket.put(blob(digest), original[:-1] + b"X")  # same size, other content
    assert populated.fsck(quick=True).ok
    assert mr("--root", url, "fsck", "--quick", "-q").returncode == 0
    result = populated.fsck()
    assert [(p.kind, p.object) for p in result.problems] == [("blob", digest)], result.problems
    assert "content does not match its digest" in result.problems[0].message
    out = mr("--root", url, "fsck", "--json")
    assert out.returncode == 1 and [p["object"] for p in json.loads(out.stdout)["problems"]] == [digest]


def test_full_fsck_puts_nothing_into_the_cache(populated, bucket, tmp_path, monkeypatch):
    """A damaged blob fsck downloaded must never be served later by a pull."""
    digest = digests(populated, "resnet:v0")["model.bin"]
    original = bucket.get(blob(digest))
    bucket.put(blob(digest), original[:-1] + b"X")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh-cache"))
    reg = modelreg.Registry.open(populated.location)
    assert not reg.fsck().ok
    assert not (tmp_path / "fresh-cache" / "modelreg" / "objects" / digest[:2] / digest[2:]).exists()


def test_fsck_quick_makes_no_request_per_blob(populated, s3_endpoint, bucket, tmp_path):
    """`fsck --quick` lists objects/ once: many more blobs cost no more requests."""
    def count(reg) -> int:
        before = len(s3_endpoint.requests(bucket.name))
        assert reg.fsck(quick=True).ok
        return len(s3_endpoint.requests(bucket.name)) - before

    few = count(populated)
    many = make_tree(tmp_path / "many", {f"f{i:03}": f"{i}\n" for i in range(150)})
    populated.log(many, "wide")  # one version, 150 more blobs
    assert count(populated) < few + 20


# -- gc --------------------------------------------------------------------------------


def test_gc_removes_the_blobs_of_a_deleted_version_and_keeps_the_rest(populated, url, bucket, mr, tmp_path):
    v0, v1 = digests(populated, "resnet:v0"), digests(populated, "resnet:v1")
    populated.rm("resnet:v0", force=True)
    only_v0 = {v0["model.bin"], v0["x/notes"]}
    before = bucket.keys()
    kept = populated.gc()  # the default grace (24h): just uploaded, so kept
    assert kept.blobs == 0 and kept.kept == 2 and bucket.keys() == before
    out = mr("--root", url, "gc", "--grace", "0", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["blobs"] == 2 and doc["dry_run"] is False
    assert doc["bytes"] == len(b"weights-a" * 500) + len("a\n")
    after = bucket.keys()
    assert not any(blob(d) in after for d in only_v0)
    assert all(blob(d) in after for d in v1.values())
    assert not any(k.startswith(("team/reg/locks/", "team/reg/leases/", "team/reg/tmp/")) for k in after), after
    # Another machine, with an empty cache, pulls v1 byte-identical; fsck is clean.
    other = Machine(tmp_path, "carol", url)
    ok(other.run("pull", "resnet:v1", "-o", "out"))
    assert (other.work / "out" / "model.bin").read_bytes() == b"weights-b" * 500
    assert (other.work / "out" / "x" / "notes").read_text() == "b\n"
    assert ok(other.run("fsck", "--json")) and json.loads(other.run("fsck", "--json").stdout)["ok"] is True


def test_gc_dry_run_deletes_nothing_and_reports_what_gc_removes(populated, url, bucket, mr):
    populated.rm("resnet:v0", force=True)
    bucket.put("team/reg/tmp/probe_elsewhere_4242_0123456789ab", b"first\n")  # a probe cut short
    before = bucket.keys()
    out = mr("--root", url, "gc", "--dry-run", "--grace", "0", "--json")
    assert out.returncode == 0, out.stderr
    dry = json.loads(out.stdout)
    assert dry["dry_run"] is True and dry["blobs"] == 2 and dry["tmp"] == 1
    assert bucket.keys() == before
    real = populated.gc(grace=0)
    assert (real.blobs, real.bytes, real.tmp) == (dry["blobs"], dry["bytes"], dry["tmp"])
    assert sorted(r.object for r in real.removed) == sorted(r["object"] for r in dry["removed"])
    assert "team/reg/tmp/probe_elsewhere_4242_0123456789ab" not in bucket.keys()


def test_gc_removes_a_manifest_no_record_names(populated, bucket):
    key = "team/reg/collections/local/default/resnet/manifests/" + "ab" * 32 + ".json"
    bucket.put(key, b'{"format": 2}')
    assert any(r.kind == "manifest" for r in populated.fsck(quick=True).reclaimable)
    result = populated.gc(grace=0)
    assert any(r.kind == "manifest" for r in result.removed) and key not in bucket.keys()
    assert populated.fsck().ok


def test_gc_waits_for_a_writer_stopped_right_before_its_commit(reg, url, bucket, tmp_path):
    """The must-show case (SPEC §7): a writer has checked and uploaded its blobs and is
    stopped before its commit; `gc --grace 0` runs meanwhile. gc waits for the writer's
    lease; nothing the writer needs is deleted; both succeed."""
    writer, collector = Machine(tmp_path, "alice", url), Machine(tmp_path, "bob", url)
    content = os.urandom(3 << 20)
    make_tree(writer.work / "big", {"weights.bin": content, "config.json": "{}\n"})
    proc = writer.start("log", "big", "-n", "x", env={"MODELREG_TEST_PAUSE_BEFORE_COMMIT": "1"})
    try:
        deadline = time.monotonic() + 120
        while True:  # the hook stops the writer: its state turns to T
            state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "T":
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the writer never reached its commit"
            time.sleep(0.1)
        uploaded = {k for k in bucket.keys() if k.startswith("team/reg/objects/")}
        assert len(uploaded) == 2
        gc = collector.start("gc", "--grace", "0", "--json")
        try:
            time.sleep(4)
            assert gc.poll() is None, gc.communicate()  # still waiting for the writer
            assert uploaded <= set(bucket.keys())
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert out.strip() == "x:v0"
        gc_out, gc_err = gc.communicate(timeout=240)
        assert gc.returncode == 0, gc_err
        assert "waiting for 1 writer" in gc_err
        assert json.loads(gc_out)["blobs"] == 0
    finally:
        for p in (proc,):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
    assert uploaded <= set(bucket.keys())
    reader = Machine(tmp_path, "carol", url)
    ok(reader.run("pull", "x:v0", "-o", "out"))
    assert (reader.work / "out" / "weights.bin").read_bytes() == content
    assert json.loads(ok(reader.run("fsck", "--json")).stdout)["ok"] is True


def test_a_writer_waiting_for_gc_does_not_hold_gc_up(reg, url, bucket, tmp_path):
    """gc waits for a writer's lease; a writer that finds gc's marker withdraws its lease
    while it waits (as locally), so gc does not wait for a writer that waits for it."""
    writer, collector = Machine(tmp_path, "alice", url), Machine(tmp_path, "bob", url)
    make_tree(writer.work / "ckpt", {"w.bin": b"w" * 1000})
    held = "team/reg/leases/lease_elsewhere_77_0123456789ab.json"
    bucket.put(held, b"{}")  # a writer on another machine, at work
    gc = collector.start("gc", "--grace", "0")
    try:
        deadline = time.monotonic() + 60
        while "team/reg/locks/gc.json" not in bucket.keys():
            assert gc.poll() is None and time.monotonic() < deadline, gc.communicate()
            time.sleep(0.1)
        log = writer.start("log", "ckpt", "-n", "w")
        time.sleep(3)  # the writer finds the marker and waits
        assert log.poll() is None, log.communicate()
        bucket.delete(held)  # the other writer is done
        _, err = gc.communicate(timeout=25)  # well before gc's own 30 s bound
        assert gc.returncode == 0, err
        out, err = log.communicate(timeout=120)
        assert log.returncode == 0, err
        assert out.strip() == "w:v0"
    finally:
        for p in (gc, locals().get("log")):
            if p is not None and p.poll() is None:
                p.kill()
    assert reg.fsck().ok


def test_a_lapsed_lease_does_not_hold_gc_and_a_fresh_one_does(populated, bucket, monkeypatch):
    monkeypatch.setattr(remote_maintenance, "LEASE_SECONDS", 2.0)
    monkeypatch.setattr(remote_maintenance, "GC_WRITER_WAIT", 1.0)
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "1")
    lease = "team/reg/leases/lease_elsewhere_77_0123456789ab.json"
    bucket.put(lease, json.dumps({"host": "elsewhere", "pid": 77}).encode())
    with pytest.raises(LockTimeout, match="writers are still running.*pid 77 on elsewhere"):
        populated.gc(grace=0)
    assert "team/reg/locks/gc.json" not in bucket.keys()  # the marker goes on error too
    time.sleep(3.5)  # by the store's clock, the lease is now older than LEASE_SECONDS
    listed = populated.fsck(quick=True).reclaimable
    assert [(r.kind, r.object) for r in listed] == [("lock", "leases/lease_elsewhere_77_0123456789ab.json")]
    result = populated.gc(grace=0)
    assert result.locks == 1 and lease not in bucket.keys()


def test_a_fresh_lease_holds_gc_through_the_command(populated, url, bucket, mr, monkeypatch):
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "1")
    monkeypatch.setattr(remote_maintenance, "GC_WRITER_WAIT", 1.0)
    before = bucket.keys()
    populated.rm("resnet:v0", force=True)
    bucket.put("team/reg/leases/lease_elsewhere_77_0123456789ab.json", b"{}")
    failed(mr("--root", url, "gc", "--grace", "0"), 4)
    assert set(before) <= set(bucket.keys())  # nothing removed


def test_a_running_gc_refuses_a_second_and_a_stopped_ones_marker_is_taken_over(populated, bucket, url, mr,
                                                                               monkeypatch):
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "1")
    marker = "team/reg/locks/gc.json"
    bucket.put(marker, json.dumps({"host": "elsewhere", "pid": 99}).encode())
    with pytest.raises(LockTimeout, match="another gc is running.*pid 99 on elsewhere"):
        populated.gc(grace=0)
    failed(mr("--root", url, "gc", "--grace", "0"), 4)
    assert json.loads(bucket.get(marker))["pid"] == 99  # another gc's marker is left alone
    monkeypatch.setattr(remote_maintenance, "LEASE_SECONDS", 2.0)
    time.sleep(3.5)  # by the store's clock, that gc stopped renewing its marker
    notes = []
    populated.notify = notes.append
    populated.rm("resnet:v0", force=True)
    assert populated.gc(grace=0).blobs == 2
    assert any("took over the gc marker of pid 99 on elsewhere" in n for n in notes), notes
    assert marker not in bucket.keys()


def test_fsck_progress_total_is_the_buckets_blob_bytes(populated, bucket):
    """The size a terminal's progress bar is drawn against (`store_bytes`) on a URL."""
    from modelreg.maintenance import store_bytes

    assert store_bytes(populated) == sum(size for key, size in bucket.keys().items()
                                         if key.startswith("team/reg/objects/"))
