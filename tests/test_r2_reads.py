"""Issue 9, "one bad object never takes the registry down" and "pull serves only what the
version digest vouches for".

A bad object here is one stored file that cannot be read or parsed (tampered, empty, a
directory, a FIFO, a socket, a device, nested too deep) or a manifest whose fields have
the wrong types. Each one fails only the commands that need it. The CLI runs as a real
process with a timeout, so that a read blocking on a FIFO fails the test instead of
hanging it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tree
from modelreg import Registry
from modelreg.errors import Error
from modelreg.hashing import version_digest
from foundation_util import manifest_path, rewrite_manifest
from reliability_util import assert_error, env_for

TIMEOUT = 30  # seconds; a read that blocks on a FIFO ends the test here instead of hanging it
MEMORY = 2 << 30  # bytes of address space a command may add; reading /dev/zero would take them all


def coll_dir(reg: Registry, name: str) -> Path:
    return reg.path / "collections" / "local" / "default" / name


def record_path(reg: Registry, name: str, number: int) -> Path:
    """Version N's manifest: in format 2 the one stored file a version has alone."""
    return manifest_path(reg.path, name, number)


def blob(reg: Registry, digest: str) -> Path:
    return reg.path / "objects" / digest[:2] / digest[2:]


def _socket_at(path: Path) -> None:
    path.unlink()
    cwd = os.getcwd()
    os.chdir(path.parent)  # a relative name: sun_path holds only ~107 bytes
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path.name)
    finally:
        os.chdir(cwd)


def _replace(make):
    def apply(path: Path) -> None:
        path.unlink()
        make(path)
    return apply


# Files that cannot be read as a record at all: gc cannot tell which blobs they name.
UNREADABLE = {
    "directory": _replace(lambda p: p.mkdir()),
    "fifo": _replace(os.mkfifo),
    "socket": _socket_at,
    "symlink-to-dev-zero": _replace(lambda p: p.symlink_to("/dev/zero")),
}
# Files that read but do not parse.
UNPARSABLE = {
    "not-json": lambda p: p.write_text("{ this is not json"),
    "empty": lambda p: p.write_bytes(b""),
    "nested-too-deep": lambda p: p.write_bytes(b'{"format":1,"version":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "not-an-object": lambda p: p.write_text("[1, 2, 3]"),
}
BREAKERS = {**UNREADABLE, **UNPARSABLE}
BREAKER_PARAMS = [pytest.param(b, id=k) for k, b in BREAKERS.items()]


def _patch(**fields):
    def apply(path: Path) -> None:
        data = json.loads(path.read_text())
        data.update(fields)
        # under its own BLAKE3, so that readers get past the name check to the fields
        rewrite_manifest(path, json.dumps(data).encode())
    return apply


def _nan_metadata(path: Path) -> None:
    data = json.loads(path.read_text())
    data["metadata"] = {"loss": "PLACEHOLDER"}
    rewrite_manifest(path, json.dumps(data).replace('"PLACEHOLDER"', "NaN").encode())


# Tampered fields: the JSON parses, a field has a type nothing downstream expects.
FIELDS = {
    "inputs-not-objects": _patch(inputs=[1]),
    "input-without-digest": _patch(inputs=[{"ref": "local/default/m:v0"}]),
    "inputs-not-a-list": _patch(inputs="m:v0"),
    "producer-git-string": _patch(producer={"git": "x"}),
    "producer-git-dirty-string": _patch(producer={"git": {"commit": "abc", "dirty": "yes"}}),
    "producer-command-string": _patch(producer={"command": "python train.py"}),
    "producer-user-number": _patch(producer={"user": 5}),
    "producer-a-list": _patch(producer=["user"]),
    "metadata-a-list": _patch(metadata=[1]),
    "metadata-nan": _nan_metadata,
    "description-a-number": _patch(description=3),
}


@pytest.fixture
def reg(isolated_env, tmp_path) -> Registry:
    """m:v0..v2, other:v0 and classifier:v0 -> m:v0; the bad object is always m:v1."""
    Registry.init(isolated_env).config_set("core.fsync", "false")
    reg = Registry.open(isolated_env)
    for number, content in enumerate(["zero\n", "one!\n", "two!!\n"]):
        reg.log(make_tree(tmp_path / f"src{number}", {"w.bin": content}), "m")
    reg.log(make_tree(tmp_path / "other", {"o.bin": "other\n"}), "other", aliases=["best"])
    reg.link("m:v0", "classifier")
    return reg


def break_record(reg: Registry, name: str, number: int, breaker) -> None:
    breaker(record_path(reg, name, number))
    # An in-place rewrite leaves the directory's mtime, and so the index, "fresh": drop it,
    # as any later change to the collection would, so that readers meet the bad record.
    (coll_dir(reg, name) / "snapshot.json").unlink(missing_ok=True)


def _vm_size() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _limit_memory(extra: int) -> tuple[int, int] | None:
    """Cap this process's address space at its current size plus `extra`; the old limits, or None."""
    size = _vm_size()
    if size is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return soft, hard


def cli(reg: Registry, *args):
    """The CLI as a real process, which may neither block nor eat memory without bound."""
    return subprocess.run([sys.executable, "-m", "modelreg", *map(str, args)], cwd=reg.path.parent,
                          env=env_for(reg.path), capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=lambda: _limit_memory(MEMORY))


@pytest.fixture(autouse=True)
def bounded():
    """In-process calls too: a regression fails the test instead of hanging it or filling memory."""
    def expired(signum, frame):
        raise TimeoutError("a read blocked")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TIMEOUT * 4)  # the test's own subprocesses have their own timeouts
    limits = _limit_memory(MEMORY)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if limits is not None:
            resource.setrlimit(resource.RLIMIT_AS, limits)


def good_blobs(reg: Registry) -> dict[str, bytes]:
    """The blobs of every good live version, with their content."""
    found = {}
    for ref in ("m:v0", "m:v2", "other:v0"):
        for entry in reg.show(ref).files:
            found[entry.digest] = blob(reg, entry.digest).read_bytes()
    return found


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("modelreg: warning: ")]


# -- one bad record: everything else still works ---------------------------------------


@pytest.mark.parametrize("breaker", BREAKER_PARAMS)
def test_api_fails_only_what_needs_the_bad_record(reg, tmp_path, breaker):
    keep = good_blobs(reg)
    bad = record_path(reg, "m", 1).name
    break_record(reg, "m", 1, breaker)
    notes: list[str] = []
    api = Registry.open(reg.path, notify=notes.append)

    # Format 2: a version's summary lives in its change record, so listings never read
    # the manifest and show the version; only what needs its files or fields fails.
    assert [c.name for c in api.collections()] == ["classifier", "m", "other"]
    rows = api.versions("m")
    assert [r.ref for r in rows] == ["m:v0", "m:v1", "m:v2"]
    assert "latest" in rows[-1].aliases and rows[0].links == ("classifier:v0",)

    for call in (lambda: api.show("m:v1"), lambda: api.pull("m:v1", tmp_path / "out"),
                 lambda: api.files("m:v1"), lambda: api.diff("m:v0", "m:v1")):
        with pytest.raises(Error) as caught:
            call()
        assert caught.value.exit_code == 1 and bad in caught.value.message
    assert not (tmp_path / "out").exists()

    assert api.show("m:v0").links == ("classifier:v0",)
    assert api.show("m").version == 2  # latest: the bad record is older
    assert api.show("classifier:v0").source == "m:v0"
    api.pull("m:v2", tmp_path / "v2")
    assert (tmp_path / "v2" / "w.bin").read_text() == "two!!\n"
    # gc with a bad manifest: test_gc_removes_no_blob_while_a_record_cannot_be_read
    assert {d: blob(reg, d).read_bytes() for d in keep} == keep


@pytest.mark.parametrize("breaker", [BREAKERS["fifo"], BREAKERS["not-json"]], ids=["fifo", "not-json"])
def test_fsck_names_a_bad_manifest(reg, breaker):
    break_record(reg, "m", 1, breaker)
    checked = cli(reg, "fsck", "--json")
    assert checked.returncode == 1, checked.stderr
    assert [p["object"] for p in json.loads(checked.stdout)["problems"]] == ["m:v1"]


@pytest.mark.parametrize("breaker", BREAKER_PARAMS)
def test_cli_fails_only_what_needs_the_bad_record(reg, breaker):
    keep = good_blobs(reg)
    bad = record_path(reg, "m", 1).name
    break_record(reg, "m", 1, breaker)

    listed = cli(reg, "ls", "--plain")
    assert listed.returncode == 0, listed.stderr
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["classifier", "m", "other"]

    versions = cli(reg, "ls", "m", "-q")
    assert versions.returncode == 0, versions.stderr
    assert versions.stdout.split() == ["m:v0", "m:v1", "m:v2"]  # summaries are in the records
    assert versions.stderr == ""  # -q: nothing but errors

    for args in (["show", "m:v1"], ["pull", "m:v1", "-o", "out"], ["ls", "m:v1"], ["diff", "m:v0", "m:v1"]):
        assert_error(cli(reg, *args), 1, bad)
    assert not (reg.path.parent / "out").exists()

    shown = cli(reg, "show", "m", "-q")
    assert (shown.returncode, shown.stdout) == (0, "m:v2\n"), shown.stderr
    pulled = cli(reg, "pull", "classifier:v0", "-q")
    assert pulled.returncode == 0, pulled.stderr
    assert (Path(pulled.stdout.strip()) / "w.bin").read_text() == "zero\n"

    assert {d: blob(reg, d).read_bytes() for d in keep} == keep


def manifest_file(reg: Registry, name: str, number: int) -> Path:
    """Format 2: where the manifest of name:vN is (named by its BLAKE3, in its change record)."""
    summary = reg.collection(reg.parse(name).collection).state()["versions"][number]
    return coll_dir(reg, name) / "manifests" / f"{summary['manifest']}.json"


@pytest.mark.parametrize("breaker", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_gc_removes_no_blob_while_a_record_cannot_be_read(reg, tmp_path, breaker):
    """It cannot tell which blobs that manifest names; the rest of its work still happens."""
    deleted = reg.show("other:v0").files[0].digest
    reg.rm("other:v0", force=True)  # its blob is now unreferenced, and old enough for --grace 0
    orphan = reg.path / "tmp" / "rec-999999999-abcdef"  # a dead writer's temp file
    orphan.write_bytes(b"x")
    bad = manifest_file(reg, "m", 1)
    whole = bad.read_bytes()
    breaker(bad)

    result = cli(reg, "gc", "--grace", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["blobs"] == 0
    assert any(f"m/manifests/{bad.name}" in w and "no blob" in w for w in warnings(result.stderr)), result.stderr
    assert blob(reg, deleted).exists()
    assert not orphan.exists()

    # fsck agrees: with a manifest it cannot read, it offers no blob as reclaimable.
    report = Registry.open(reg.path).fsck()
    assert not [r for r in report.reclaimable if r.kind == "blob"]
    assert ("manifest", "m:v1") in [(p.kind, p.object) for p in report.problems]

    # Once the manifest reads again, gc accounts for every blob again.
    bad.rmdir() if bad.is_dir() and not bad.is_symlink() else bad.unlink()
    bad.write_bytes(whole)
    assert Registry.open(reg.path).gc(grace=0).blobs >= 1
    assert not blob(reg, deleted).exists()


def test_the_newest_record_unreadable_means_latest_is_unknown(reg, tmp_path):
    """`latest` never falls back to an older version: that would serve the wrong files.
    (Format 2: the records say which version is latest, so it is known; what fails is
    reading its manifest.)"""
    break_record(reg, "m", 2, UNREADABLE["fifo"])
    for args in (["show", "m"], ["pull", "m", "-o", "out"], ["show", "m:latest", "--json"]):
        assert_error(cli(reg, *args), 1, "m/manifests/")
    assert not (reg.path.parent / "out").exists()
    listed = cli(reg, "ls", "m", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["version"], "latest" in r["aliases"]) for r in rows] == [(0, False), (1, False), (2, True)]
    everything = cli(reg, "ls", "--json")
    assert everything.returncode == 0, everything.stderr
    assert {c["name"]: c["latest"] for c in json.loads(everything.stdout)}["m"] == 2
    shown = cli(reg, "show", "m:v1", "--json")
    assert shown.returncode == 0 and "latest" not in json.loads(shown.stdout)["aliases"]


def test_fsck_names_every_bad_object_and_goes_on(reg, tmp_path):
    """One registry holding every kind at once: each is named, none stops the check."""
    names = []
    for i, (kind, breaker) in enumerate({**BREAKERS, **FIELDS}.items()):
        name = f"c{i}"
        reg.log(make_tree(tmp_path / f"c{i}a", {"f": f"{i}a"}), name)
        reg.log(make_tree(tmp_path / f"c{i}b", {"f": f"{i}b"}), name)
        breaker(manifest_file(reg, name, 1))
        names.append(name)
    # a problem of another kind: an alias at no version, by a hand-written change record
    changes = coll_dir(reg, "other") / "changes"
    seq = len(list(changes.iterdir()))
    (changes / f"{seq:012d}.json").write_text(json.dumps({
        "format": 2, "seq": seq, "txid": "t" * 32, "time": "2026-01-01T00:00:00.000000Z", "events": [],
        "aliases": {"best": 0, "stale": 9}}))

    result = cli(reg, "fsck", "--json")
    assert result.returncode == 1, result.stderr
    problems = json.loads(result.stdout)["problems"]
    named = {p["object"] for p in problems}
    assert {f"{n}:v1" for n in names} <= named, problems
    assert "other:stale" in named
    assert not [o for o in named if o.split(":")[0] in ("m", "classifier")]

    listed = cli(reg, "ls", "-q")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {"classifier", "m", "other", *names}


# -- tampered fields -------------------------------------------------------------------


@pytest.mark.parametrize("tamper", FIELDS.values(), ids=FIELDS.keys())
def test_show_of_a_tampered_field_is_one_clean_error_in_every_mode(reg, tamper):
    break_record(reg, "m", 1, tamper)
    with pytest.raises(Error) as caught:
        Registry.open(reg.path).show("m:v1")
    assert caught.value.exit_code == 1
    for mode in ([], ["--plain"], ["--json"], ["-q"]):
        assert_error(cli(reg, "show", "m:v1", *mode), 1, "m/manifests/")
    assert_error(cli(reg, "pull", "m:v1", "-o", "out"), 1, "m/manifests/")
    assert not (reg.path.parent / "out").exists()
    # fsck of a bad manifest: test_fsck_names_a_bad_manifest
    shown = cli(reg, "show", "m:v0", "--plain")
    assert shown.returncode == 0, shown.stderr


def test_a_tampered_producer_and_inputs_of_the_right_types_still_show(reg, tmp_path):
    """Validation refuses wrong types only: unknown producer keys and odd strings render."""
    reg.log(make_tree(tmp_path / "in", {"x": "x"}), "n", inputs=["m:v0"])
    path = record_path(reg, "n", 0)
    data = json.loads(path.read_text())
    data["producer"] = {"git": {"commit": "", "dirty": True}, "command": [], "extra": {"a": [1, None]},
                        "run": 7}
    data["inputs"] = [{"ref": "not/a:ref:at all", "digest": "a" * 64, "note": 1}]
    rewrite_manifest(path, json.dumps(data).encode())
    for mode in ([], ["--plain"], ["--json"], ["-q"]):
        result = cli(reg, "show", "n:v0", *mode)
        assert result.returncode == 0, result.stderr


# -- the version digest vouches for the file list --------------------------------------


def repoint(reg: Registry, name: str, number: int, digest: str) -> None:
    """Point the record's only file entry at another stored blob of the same size."""
    path = record_path(reg, name, number)
    data = json.loads(path.read_text())
    data["files"][0]["digest"] = digest
    rewrite_manifest(path, json.dumps(data).encode())


@pytest.fixture
def repointed(isolated_env, tmp_path) -> Registry:
    """s:v1's file entry re-pointed at s:v0's blob (same size); classifier:v0 links s:v1."""
    Registry.init(isolated_env).config_set("core.fsync", "false")
    reg = Registry.open(isolated_env)
    reg.log(make_tree(tmp_path / "a", {"w.bin": "aaaa"}), "s")
    reg.log(make_tree(tmp_path / "b", {"w.bin": "bbbb"}), "s")
    reg.link("s:v1", "classifier")
    repoint(reg, "s", 1, reg.show("s:v0").files[0].digest)
    return reg


def test_pull_of_a_repointed_file_entry_fails_and_writes_nothing(repointed, tmp_path):
    reg = repointed
    for ref in ("s:v1", "s", "classifier:v0", "classifier"):
        assert_error(cli(reg, "pull", ref, "-o", "out"), 1, "does not match its digest")
        assert not (reg.path.parent / "out").exists()
        with pytest.raises(Error) as caught:
            Registry.open(reg.path).pull(ref, tmp_path / "out")
        assert caught.value.exit_code == 1
        assert not (tmp_path / "out").exists()


def test_every_reader_of_a_repointed_manifest_refuses_it(repointed, tmp_path):
    reg = repointed
    for args in (["show", "s:v1"], ["show", "classifier:v0", "--json"], ["ls", "s:v1"], ["diff", "s:v0", "s:v1"],
                 ["link", "s:v1", "other"], ["log", str(tmp_path / "a"), "-n", "t", "--input", "s:v1"]):
        assert_error(cli(reg, *args), 1, "does not match its digest")
    assert not coll_dir(reg, "other").exists() and not coll_dir(reg, "t").exists()
    assert cli(reg, "pull", "s:v0", "-o", "v0").returncode == 0
    assert (reg.path.parent / "v0" / "w.bin").read_text() == "aaaa"


def test_fsck_names_a_repointed_manifest(repointed):
    checked = cli(repointed, "fsck", "--json")
    assert checked.returncode == 1
    messages = [p["message"] for p in json.loads(checked.stdout)["problems"] if p["object"] == "s:v1"]
    assert messages and "is not the digest of its files" in messages[0]  # fsck's own wording


def test_a_forged_manifest_with_a_recomputed_digest_is_caught_by_the_link(repointed):
    """A forger who also rewrites the digest no longer matches what the link vouched for."""
    reg = repointed
    path = record_path(reg, "s", 1)
    data = json.loads(path.read_text())
    data["digest"] = version_digest([(f["path"], f["digest"], f["size"], f["executable"]) for f in data["files"]])
    rewrite_manifest(path, json.dumps(data).encode())
    assert_error(cli(reg, "pull", "classifier:v0", "-o", "out"), 1, "it was changed")
    assert not (reg.path.parent / "out").exists()
    listed = cli(reg, "ls", "classifier", "--json")
    # format 2: `ls NAME` reads the link summaries in the records, not the source manifest
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["dangling"] is False


# -- other bad objects: collection.json, index, aliases, history, config -----------------


CLAIM_PARAMS = [pytest.param(b, id=k) for k, b in BREAKERS.items()]


@pytest.mark.parametrize("breaker", CLAIM_PARAMS)
def test_a_bad_collection_json_hides_only_its_collection(reg, breaker):
    """Format 2: a collection's name claim (names/...) holds its kind, as collection.json did."""
    breaker(reg.path / "names" / "local" / "default" / "other.json")
    listed = cli(reg, "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [c["name"] for c in json.loads(listed.stdout)] == ["classifier", "m"]
    assert any("other.json" in w for w in warnings(listed.stderr)), listed.stderr
    assert cli(reg, "show", "m:v2", "-q").returncode == 0
    assert_error(cli(reg, "ls", "other"), 1, "other.json")
    assert_error(cli(reg, "show", "other:v0"), 1, "other.json")


def test_a_collection_that_never_held_a_version_is_not_listed(reg):
    claims = reg.path / "names" / "local" / "default"
    (claims / "empty.json").write_text('{"format": 2, "name": "empty", "kind": "artifact", "created": ""}')
    assert "empty" not in [c.name for c in Registry.open(reg.path).collections()]
    listed = cli(reg, "ls", "-q")
    assert listed.returncode == 0 and "empty" not in listed.stdout.split()


SNAPSHOTS = {
    "not-json": "{ this is not json",
    "wrong-types": json.dumps({"format": 2, "seq": "1", "next": [], "versions": 5, "aliases": [1]}),
    "versions-not-an-object": json.dumps({"format": 2, "seq": 0, "next": 3, "versions": [1, 2], "aliases": {}}),
    "nested-too-deep": "[" * 100_000 + "]" * 100_000,
    "not-an-object": "[1, 2, 3]",
}


@pytest.mark.parametrize("snapshot", SNAPSHOTS.values(), ids=SNAPSHOTS.keys())
def test_a_bad_index_is_rebuilt_from_the_records(reg, snapshot):
    """Format 2's cache is the snapshot: a bad one is only slower, never wrong."""
    (coll_dir(reg, "m") / "snapshot.json").unlink(missing_ok=True)
    (coll_dir(reg, "m") / "snapshot.json").write_text(snapshot)
    rows = Registry.open(reg.path).versions("m")
    assert [r.ref for r in rows] == ["m:v0", "m:v1", "m:v2"]
    for args in (["ls", "m", "--json"], ["ls", "m"], ["ls", "--plain"], ["show", "m:v1", "--plain"],
                 ["history", "m", "--json"]):
        result = cli(reg, *args)
        assert result.returncode == 0, (args, result.stderr)
    assert [r["version"] for r in json.loads(cli(reg, "ls", "m", "--json").stdout)] == [0, 1, 2]


def test_no_reader_blocks_on_a_fifo_index_alias_or_history(reg):
    """Format 2: the snapshots are the derived files a reader opens first."""
    for name in ("m", "other", "classifier"):
        path = coll_dir(reg, name) / "snapshot.json"
        path.unlink(missing_ok=True)
        os.mkfifo(path)
    for args in (["ls"], ["ls", "m"], ["show", "m:v1"], ["pull", "m:v1", "-o", "out"], ["history", "m"],
                 ["show", "classifier:v0"], ["ls", "other", "--json"]):
        result = cli(reg, *args)
        assert result.returncode == 0, (args, result.stderr)


def test_a_history_line_nested_ten_thousand_levels_deep(reg, tmp_path):
    """Format 2: history is the change records; one nested too deep is one clean error."""
    deep = b"[" * 10_000 + b"]" * 10_000
    (coll_dir(reg, "m") / "changes" / "000000000003.json").write_bytes(deep)
    (coll_dir(reg, "m") / "snapshot.json").unlink(missing_ok=True)
    for args in (["history", "m", "--json"], ["ls", "m"]):
        assert_error(cli(reg, *args), 1, "000000000003.json")
    assert cli(reg, "show", "other:v0", "-q").returncode == 0  # another collection reads on


@pytest.mark.parametrize("content", [None, "[defaults]\nproject = " + "[" * 100_000, "defaults = 5\n"],
                         ids=["fifo", "nested-too-deep", "section-not-a-table"])
def test_a_bad_config_is_one_clean_error(reg, content):
    config = reg.path / "config.toml"
    config.unlink()
    if content is None:
        os.mkfifo(config)
    else:
        config.write_text(content)
    assert_error(cli(reg, "ls"), 1, "config.toml")
    with pytest.raises(Error) as caught:
        Registry.open(reg.path)
    assert caught.value.exit_code == 1
