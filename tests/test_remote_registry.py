"""A registry in a bucket, end to end: real `modelreg` processes against a real S3 endpoint
(moto_server on loopback), nothing of modelreg's own mocked (SPEC §7).

Each "machine" has its own working directory, HOME, XDG_CONFIG_HOME, XDG_CACHE_HOME and
user name; the team's registry lives at `s3://BUCKET/reg`. The endpoint comes from
AWS_ENDPOINT_URL for some machines and from `remote add … --endpoint` for others.
Requests are counted from moto's request log.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import make_tree

import modelreg
from modelreg import layout

pytest.importorskip("obstore", reason="the s3 extra is not installed")

SECRET = "not-a-real-secret-remote-0123456789"
BIG = 9 << 20  # more than one 8 MiB part: uploaded as a multipart upload


class Machine:
    """One user on one machine, running the installed command as real processes."""

    def __init__(self, binary: str, base: Path, name: str, endpoint_env: bool = True) -> None:
        self.name = name
        self.binary = binary
        self.home = base / f"{name}-home"
        self.work = base / f"{name}-work"
        self.config = self.home / "xdg-config"
        self.cache = self.home / "xdg-cache"
        for d in (self.home, self.work, self.config, self.cache):
            d.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
        self.env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.config), XDG_CACHE_HOME=str(self.cache),
                        USER=name, LOGNAME=name, MODELREG_LOCK_TIMEOUT="60")
        if not endpoint_env:  # the endpoint only through `remote add --endpoint`
            self.env.pop("AWS_ENDPOINT_URL", None)

    def run(self, *args, env=None, timeout=180) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *map(str, args)], cwd=self.work, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def proc(self, *args, env=None) -> subprocess.Popen:
        return subprocess.Popen([self.binary, *map(str, args)], cwd=self.work, env={**self.env, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)

    def ok(self, *args, **kwargs) -> subprocess.CompletedProcess:
        return ok(self.run(*args, **kwargs))

    def cached_blob(self, digest: str) -> Path:
        return self.cache / "modelreg" / layout.blob_key(digest)


@pytest.fixture
def machines(modelreg_bin, tmp_path, s3_bucket):
    def make(name, endpoint_env=True):
        return Machine(modelreg_bin, tmp_path, name, endpoint_env)
    return make


def ok(result):
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result


def refused(result, code: int):
    """SPEC §4: the exit code, stdout empty, one error line (and an optional hint), no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("modelreg: error: "), lines
    assert all(ln.startswith("hint: ") for ln in lines[1:]), lines
    assert "Traceback" not in result.stderr
    return result


def finish(procs, timeout=300):
    done = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return done


def blob_gets(endpoint, bucket: str, prefix: str = "reg") -> list[str]:
    """The GET requests for blob keys under `prefix` that moto logged so far."""
    mine = re.compile(r'"GET /%s/%s/objects/[0-9a-f]{2}/[0-9a-f]+[ ?]' % (re.escape(bucket), re.escape(prefix)))
    return [line for line in endpoint.requests(bucket) if mine.search(line)]


def file_digests(m: Machine, url: str, ref: str) -> dict[str, str]:
    files = json.loads(m.ok("--root", url, "ls", ref, "--json").stdout)
    return {f["path"]: f["digest"] for f in files}


def tree_of(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def checkpoint(m: Machine, name: str, files: dict) -> Path:
    return make_tree(m.work / name, files)


# -- 1. the team story -----------------------------------------------------------------


def test_team_story_in_a_bucket(machines, s3_endpoint, s3_bucket):
    a, b = machines("alice", endpoint_env=False), machines("bob", endpoint_env=False)
    team = f"s3://{s3_bucket}/reg"
    files = {"model.bin": os.urandom(BIG), "conf/cfg.json": '{"layers": 3}\n', "tokenizer.txt": "a b c\n"}
    checkpoint(a, "ckpt", files)
    a.ok("log", "ckpt", "-n", "run-abc-model", "-m", "val_acc=0.91", "-m", "epoch=3", "-d", "first try")

    a.ok("remote", "add", "team", team, "--endpoint", s3_endpoint.url)
    pushed = a.ok("push", "run-abc-model", "--to", "team")
    assert pushed.stdout == "run-abc-model:v0 \u2192 team run-abc-model:v0\n"
    assert f"created a new registry at {team}" in pushed.stderr
    assert any("?uploads" in line for line in s3_endpoint.requests(s3_bucket))  # the big file went multipart
    assert a.ok("-r", "team", "link", "run-abc-model:v0", "classifier", "-a", "staging").stdout == "classifier:v0\n"

    # B has no registry of its own: the bucket is the source of truth.
    b.ok("remote", "add", "team", team, "--endpoint", s3_endpoint.url)
    assert b.ok("-r", "team", "pull", "classifier:staging", "-o", "model/").stdout.strip().endswith("model")
    assert tree_of(b.work / "model") == {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    shown = json.loads(b.ok("-r", "team", "show", "classifier:staging", "--json").stdout)
    assert shown["metadata"] == {"val_acc": 0.91, "epoch": 3}
    assert shown["description"] == "first try" and shown["source"] == "run-abc-model:v0"
    assert shown["producer"]["user"] == "alice"
    assert not (b.work / ".modelreg").exists()

    b.ok("-r", "team", "alias", "classifier:staging", "production", "--expect", "none")
    # A also saw no production, but the compare-and-swap is made against the bucket: stale.
    stale = refused(a.run("-r", "team", "alias", "classifier:staging", "production", "--expect", "none"), 4)
    assert "production" in stale.stderr
    events = json.loads(a.ok("-r", "team", "history", "classifier", "--json").stdout)
    assert [(e["event"], e.get("alias"), e["user"]) for e in events] == [
        ("linked", None, "alice"), ("alias-set", "staging", "alice"), ("alias-set", "production", "bob")]
    assert all(e["host"] for e in events)
    logged = json.loads(b.ok("-r", "team", "history", "run-abc-model", "--json").stdout)
    assert [(e["event"], e["user"]) for e in logged] == [("logged", "alice")] and logged[0]["host"]


def test_every_command_works_on_a_registry_in_a_bucket(machines, s3_bucket):
    a = machines("alice")
    url = f"s3://{s3_bucket}/other"
    assert a.ok("init", url).stdout == f"{url}\n"
    assert a.ok("init", url).stdout == f"{url}\n"  # idempotent
    r = ("--root", url)
    checkpoint(a, "one", {"w.bin": b"first weights", "cfg": "a\n"})
    checkpoint(a, "two", {"w.bin": b"second weights", "extra": "x\n"})
    assert a.ok(*r, "log", "one", "-n", "net", "-m", "acc=0.5").stdout == "net:v0\n"
    assert a.ok(*r, "log", "two", "-n", "net", "-m", "acc=0.7", "-a", "best").stdout == "net:v1\n"
    assert not (a.work / ".modelreg").exists()  # nothing local was made

    (listed,) = json.loads(a.ok(*r, "ls", "--json").stdout)
    assert (listed["name"], listed["kind"], listed["versions"], listed["latest"], listed["aliases"]) == (
        "net", "artifact", 2, 1, {"best": 1})
    versions = json.loads(a.ok(*r, "ls", "net", "--json").stdout)
    assert [(v["ref"], v["metadata"]) for v in versions] == [("net:v0", {"acc": 0.5}), ("net:v1", {"acc": 0.7})]
    assert sorted(f["path"] for f in json.loads(a.ok(*r, "ls", "net:v1", "--json").stdout)) == ["extra", "w.bin"]
    shown = json.loads(a.ok(*r, "show", "net:best", "--json").stdout)
    assert shown["ref"] == "net:v1" and "best" in shown["aliases"]
    diff = json.loads(a.ok(*r, "diff", "net:v0", "net:v1", "--json").stdout)
    assert diff == {"added": ["extra"], "removed": ["cfg"], "changed": ["w.bin"], "metadata": {"acc": [0.5, 0.7]}}

    assert a.ok(*r, "alias", "--delete", "net", "best", "-q").stdout == "best\n"
    assert a.ok(*r, "rm", "net:v0", "-q").stdout == "net:v0\n"
    assert [v["ref"] for v in json.loads(a.ok(*r, "ls", "net", "--json").stdout)] == ["net:v1"]
    events = json.loads(a.ok(*r, "history", "net", "--json").stdout)
    assert [(e["event"], e["version"]) for e in events] == [
        ("logged", 0), ("logged", 1), ("alias-set", 1), ("alias-removed", 1), ("deleted", 0)]

    a.ok(*r, "config", "set", "aliases.protected", "production,gold")
    assert a.ok(*r, "config", "get", "aliases.protected").stdout == "production,gold\n"
    a.ok(*r, "alias", "net:v1", "gold")
    refused(a.run(*r, "alias", "--delete", "net", "gold"), 4)  # the bucket's config is what is enforced

    # MODELREG_DIR names it as --root does; a second machine sees the same state
    b = machines("bob")
    assert b.ok("ls", "-q", env={"MODELREG_DIR": url}).stdout == "net\n"
    b.ok("pull", "net:gold", "-o", "out", env={"MODELREG_DIR": url})
    assert tree_of(b.work / "out") == {"w.bin": b"second weights", "extra": b"x\n"}


# -- 2. races on one remote --------------------------------------------------------------


def _parallel_push(machines, url: str, contents: list[bytes]) -> list[dict]:
    senders = []
    for i, content in enumerate(contents):
        m = machines(f"m{i}")
        checkpoint(m, "ckpt", {"w.bin": content})
        m.ok("log", "ckpt")
        senders.append(m)
    docs = []
    for result in finish([m.proc("push", "ckpt", "--to", url, "--json") for m in senders]):
        ok(result)
        (doc,) = json.loads(result.stdout)
        docs.append(doc)
    return docs


def test_parallel_pushes_of_different_content_get_distinct_numbers(machines, s3_bucket):
    url = f"s3://{s3_bucket}/reg"
    contents = [os.urandom(3000) + bytes([i]) for i in range(4)]
    docs = _parallel_push(machines, url, contents)
    assert sorted(d["target"] for d in docs) == ["ckpt:v0", "ckpt:v1", "ckpt:v2", "ckpt:v3"]
    assert all(d["new"] for d in docs)
    reader = machines("reader")
    versions = json.loads(reader.ok("--root", url, "ls", "ckpt", "--json").stdout)
    assert [v["version"] for v in versions] == [0, 1, 2, 3]
    pulled = set()
    for v in versions:  # nothing lost: every version's bytes come back
        reader.ok("--root", url, "pull", v["ref"], "-o", f"out{v['version']}")
        pulled.add((reader.work / f"out{v['version']}/w.bin").read_bytes())
    assert pulled == set(contents)


def test_parallel_logs_into_one_artifact_lose_nothing(machines, s3_bucket):
    url = f"s3://{s3_bucket}/reg"
    writers = [machines(f"w{i}") for i in range(4)]
    for i, m in enumerate(writers):
        checkpoint(m, "ckpt", {"w.bin": f"writer {i}".encode() * 100})
    results = finish([m.proc("--root", url, "log", "ckpt", "-n", "shared", "--json") for m in writers])
    numbers = sorted(json.loads(ok(r).stdout)["version"] for r in results)
    assert numbers == [0, 1, 2, 3]
    # the first write made the registry: exactly one of them says so
    assert sum("created a new registry" in r.stderr for r in results) == 1
    versions = json.loads(writers[0].ok("--root", url, "ls", "shared", "--json").stdout)
    assert len({v["digest"] for v in versions}) == 4


def test_parallel_pushes_of_identical_content_make_one_version(machines, s3_bucket):
    url = f"s3://{s3_bucket}/reg"
    docs = _parallel_push(machines, url, [b"the same weights" * 1000] * 4)
    assert {d["target"] for d in docs} == {"ckpt:v0"}
    assert sum(d["new"] for d in docs) == 1
    assert [v.version for v in modelreg.Registry.open(url).versions("ckpt")] == [0]


def test_racing_expect_none_has_exactly_one_winner(machines, s3_bucket):
    url = f"s3://{s3_bucket}/reg"
    a = machines("alice")
    for i in range(4):
        checkpoint(a, f"c{i}", {"w": f"candidate {i}".encode()})
        a.ok("--root", url, "log", f"c{i}", "-n", "ckpt")
    racers = [machines(f"r{i}") for i in range(4)]
    results = finish([m.proc("--root", url, "alias", f"ckpt:v{i}", "production", "--expect", "none")
                      for i, m in enumerate(racers)])
    winners = [i for i, r in enumerate(results) if r.returncode == 0]
    assert len(winners) == 1, [(r.returncode, r.stderr) for r in results]
    for i, r in enumerate(results):
        if i not in winners:
            refused(r, 4)
    shown = json.loads(a.ok("--root", url, "show", "ckpt:production", "--json").stdout)
    assert shown["version"] == winners[0]
    events = json.loads(a.ok("--root", url, "history", "ckpt:production", "--json").stdout)
    assert [(e["event"], e["user"]) for e in events] == [("alias-set", f"r{winners[0]}")]


def test_two_machines_first_logs_to_an_empty_location_share_one_registry(machines, s3_bucket):
    url = f"s3://{s3_bucket}/fresh"
    a, b = machines("alice"), machines("bob", endpoint_env=False)
    b.ok("remote", "add", "team", url, "--endpoint", a.env["AWS_ENDPOINT_URL"])
    checkpoint(a, "ckpt", {"w": b"alice"})
    checkpoint(b, "ckpt", {"w": b"bob"})
    results = finish([a.proc("--root", url, "log", "ckpt", "-n", "a-model"),
                      b.proc("-r", "team", "log", "ckpt", "-n", "b-model")])
    for r in results:
        ok(r)
    assert sum("created a new registry" in r.stderr for r in results) == 1
    assert a.ok("--root", url, "ls", "-q").stdout == "a-model\nb-model\n"
    assert b.ok("-r", "team", "ls", "-q").stdout == "a-model\nb-model\n"


# -- 3. the local cache --------------------------------------------------------------------


def _logged(m: Machine, url: str, files: dict, name: str = "net") -> dict[str, str]:
    checkpoint(m, f"src-{name}", files)
    m.ok("--root", url, "log", f"src-{name}", "-n", name)
    return file_digests(m, url, f"{name}:v0")


def test_a_second_pull_downloads_nothing_and_can_hardlink_from_the_cache(machines, s3_endpoint, s3_bucket):
    url = f"s3://{s3_bucket}/reg"
    files = {"a.bin": os.urandom(200_000), "b.bin": os.urandom(1000), "same.bin": b"dup", "also.bin": b"dup"}
    digests = _logged(machines("writer"), url, files)
    b = machines("bob")
    before = len(blob_gets(s3_endpoint, s3_bucket))
    b.ok("--root", url, "pull", "net", "-o", "first")
    assert len(blob_gets(s3_endpoint, s3_bucket)) - before == 3  # each distinct blob once
    assert tree_of(b.work / "first") == files
    before = len(blob_gets(s3_endpoint, s3_bucket))
    b.ok("--root", url, "pull", "net", "-o", "second")
    b.ok("--root", url, "pull", "net", "-o", "linked", "--mode", "hardlink")
    assert blob_gets(s3_endpoint, s3_bucket)[before:] == []
    assert tree_of(b.work / "second") == files == tree_of(b.work / "linked")
    for path, digest in digests.items():
        assert (b.work / "linked" / path).stat().st_ino == b.cached_blob(digest).stat().st_ino
        assert (b.work / "second" / path).stat().st_ino != b.cached_blob(digest).stat().st_ino


def test_a_blob_the_local_registry_holds_is_not_downloaded(machines, s3_endpoint, s3_bucket):
    """SPEC §7: Alice pushes, links on the team registry, and pulls the link back: her own
    registry already holds every blob. A damaged local copy is not served: downloaded."""
    url = f"s3://{s3_bucket}/reg"
    a = machines("alice")
    files = {"w.bin": os.urandom(300_000), "cfg.json": b"{}"}
    checkpoint(a, "ckpt", files)
    a.ok("log", "ckpt")
    a.ok("push", "ckpt", "--to", url)
    a.ok("--root", url, "link", "ckpt:v0", "classifier", "-a", "staging")
    before = len(blob_gets(s3_endpoint, s3_bucket))
    a.ok("--root", url, "pull", "classifier:staging", "-o", "model")
    assert blob_gets(s3_endpoint, s3_bucket)[before:] == []
    assert tree_of(a.work / "model") == files
    # Her local blob damaged (and the cache emptied): the pull downloads the good one.
    a.ok("cache", "prune")
    blob = a.work / ".modelreg" / layout.blob_key(file_digests(a, url, "ckpt:v0")["w.bin"])
    blob.chmod(0o644)
    blob.write_bytes(b"x" * 300_000)
    before = len(blob_gets(s3_endpoint, s3_bucket))
    a.ok("--root", url, "pull", "classifier:staging", "-o", "again")
    assert tree_of(a.work / "again") == files
    assert len(blob_gets(s3_endpoint, s3_bucket)[before:]) == 1


def test_a_damaged_cached_blob_never_goes_up(machines, s3_endpoint, s3_bucket):
    """`log` to a bucket uploads from the cache: a cached blob damaged since it was stored
    (the stat cache still says its file is unchanged) is stored again from the file."""
    import boto3

    a = machines("alice")
    files = {"w.bin": os.urandom(300_000), "cfg.json": b"{}"}
    checkpoint(a, "ckpt", files)
    a.ok("--root", f"s3://{s3_bucket}/first", "log", "ckpt")
    digest = file_digests(a, f"s3://{s3_bucket}/first", "ckpt:v0")["w.bin"]
    cached = a.cached_blob(digest)
    cached.chmod(0o644)
    cached.write_bytes(b"x" * 300_000)
    a.ok("--root", f"s3://{s3_bucket}/second", "log", "ckpt")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint.url)
    body = s3.get_object(Bucket=s3_bucket, Key=f"second/{layout.blob_key(digest)}")["Body"].read()
    assert body == files["w.bin"]
    b = machines("bob")
    b.ok("--root", f"s3://{s3_bucket}/second", "pull", "ckpt", "-o", "model")
    assert tree_of(b.work / "model") == files


def test_symlink_mode_on_a_remote_is_refused_and_writes_nothing(machines, s3_bucket):
    url = f"s3://{s3_bucket}/reg"
    _logged(machines("writer"), url, {"w.bin": b"weights"})
    b = machines("bob")
    result = refused(b.run("--root", url, "pull", "net", "-o", "out", "--mode", "symlink"), 2)
    assert "symlink" in result.stderr
    assert not (b.work / "out").exists()
    assert not [p for p in b.cache.rglob("*") if p.is_file() and "objects" in p.parts]
    b.ok("config", "set", "--user", "pull.mode", "symlink")  # the same through the user's default
    refused(b.run("--root", url, "pull", "net", "-o", "out"), 2)
    assert not (b.work / "out").exists()


@pytest.mark.parametrize("mode", ["auto", "copy", "hardlink"])
def test_a_damaged_cached_blob_is_downloaded_again(machines, s3_endpoint, s3_bucket, mode):
    url = f"s3://{s3_bucket}/reg"
    files = {"w.bin": os.urandom(100_000), "cfg": b"config\n"}
    digests = _logged(machines("writer"), url, files)
    b = machines("bob")
    b.ok("--root", url, "pull", "net", "-o", "first")
    cached = b.cached_blob(digests["w.bin"])
    cached.chmod(0o644)
    data = bytearray(cached.read_bytes())
    data[5000] ^= 0xFF  # same size: only its hash tells
    cached.write_bytes(bytes(data))
    before = len(blob_gets(s3_endpoint, s3_bucket))
    result = b.ok("--root", url, "pull", "net", "-o", "second", "--mode", mode)
    assert "damaged" in result.stderr
    assert tree_of(b.work / "second") == files
    assert len(blob_gets(s3_endpoint, s3_bucket)) - before == 1  # that blob only
    assert cached.read_bytes() == files["w.bin"]  # the cache holds good bytes again


def test_a_blob_tampered_in_the_bucket_is_refused(machines, s3_endpoint, s3_bucket):
    url = f"s3://{s3_bucket}/reg"
    files = {"w.bin": os.urandom(50_000), "cfg": b"config\n"}
    digests = _logged(machines("writer"), url, files)
    key = f"reg/{layout.blob_key(digests['w.bin'])}"
    s3_endpoint.client().put_object(Bucket=s3_bucket, Key=key, Body=os.urandom(50_000))
    b = machines("bob")
    (b.work / "out").mkdir()
    result = refused(b.run("--root", url, "pull", "net", "-o", "out"), 1)
    assert digests["w.bin"][:12] in result.stderr
    assert not (b.work / "out" / "w.bin").exists()
    assert [p.name for p in (b.work / "out").iterdir() if not p.name.startswith(".modelreg-tmp-")] in ([], ["cfg"])
    assert not b.cached_blob(digests["w.bin"]).exists()
    with pytest.raises(modelreg.IntegrityError):  # the library refuses it the same way
        _library(b, lambda: modelreg.Registry.open(url).pull("net", b.work / "lib-out"))
    assert not (b.work / "lib-out" / "w.bin").exists()


def test_parallel_pulls_sharing_one_cache_download_each_blob_once(machines, s3_endpoint, s3_bucket):
    url = f"s3://{s3_bucket}/reg"
    files = {f"part{i}.bin": os.urandom(300_000) for i in range(3)}
    _logged(machines("writer"), url, files)
    b = machines("bob")
    before = len(blob_gets(s3_endpoint, s3_bucket))
    results = finish([b.proc("--root", url, "pull", "net", "-o", f"out{i}") for i in range(4)])
    for r in results:
        ok(r)
    for i in range(4):
        assert tree_of(b.work / f"out{i}") == files
    assert len(blob_gets(s3_endpoint, s3_bucket)) - before == 3


# -- 4. faults ----------------------------------------------------------------------------


class CuttableProxy:
    """A TCP forwarder in front of the S3 endpoint: the endpoint as a client sees it. `cut()`
    drops every connection and stops listening (an endpoint that died), `cut_after(n)` does
    so once `n` request bytes went up (`down=True`: response bytes came down), and
    `restart()` listens again on the same port."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.port = 0
        self.sent = 0
        self.limit: int | None = None
        self.down = False
        self.rate: float | None = None  # bytes per second coming down, when throttled
        self.strip: bytes | None = None  # a request header dropped on the way up
        self.cut_done = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._server: socket.socket | None = None
        self.restart()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restart(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self.port = server.getsockname()[1]
        self._server = server
        self.limit = None
        self.cut_done.clear()
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut_after(self, n: int, down: bool = False) -> None:
        self.sent, self.limit, self.down = 0, n, down

    def cut(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            conns, self._conns = self._conns, []
        if server is not None:
            try:
                server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; the port is free again
            except OSError:
                pass
            server.close()
        for conn in conns:
            try:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()
            except OSError:
                pass
        self.cut_done.set()

    def _accept(self, server) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._server is not server:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src, dst, down: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if self.strip and not down:  # a store that ignores this header
                    data = re.sub(rb"(?im)^" + re.escape(self.strip) + rb":[^\r\n]*\r\n", b"", data)
                dst.sendall(data)
                if down and self.rate:
                    time.sleep(len(data) / self.rate)
                if self.limit is not None and down == self.down:
                    with self._lock:
                        self.sent += len(data)
                        over = self.sent >= self.limit
                    if over:
                        self.cut()
                        return
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def test_an_endpoint_that_dies_mid_push_leaves_nothing_torn(machines, s3_endpoint, s3_bucket):
    proxy = CuttableProxy(s3_endpoint.url)
    a = machines("alice", endpoint_env=False)
    url = f"s3://{s3_bucket}/reg"
    a.ok("remote", "add", "team", url, "--endpoint", proxy.url)
    a.ok("config", "set", "--user", "remote.timeout", "2s")
    files = {"big.bin": os.urandom(3 * BIG), "small.txt": b"small\n"}
    checkpoint(a, "ckpt", files)
    a.ok("log", "ckpt")
    a.ok("push", "ckpt", "--to", "team")  # the registry exists; this version is the first one

    checkpoint(a, "ckpt2", {"big.bin": os.urandom(3 * BIG), "small.txt": b"other\n"})
    a.ok("log", "ckpt2", "-n", "ckpt")
    proxy.cut_after(2 * BIG)  # well inside the second version's upload
    result = refused(a.run("push", "ckpt:v1", "--to", "team", timeout=120), 1)
    assert proxy.cut_done.is_set()
    assert len(result.stderr.splitlines()) <= 2
    assert proxy.url in result.stderr and url in result.stderr

    # What the bucket shows is whole: v0 as it was, no v1, no half-made record.
    proxy.restart()
    versions = json.loads(a.ok("-r", "team", "ls", "ckpt", "--json").stdout)
    assert [v["version"] for v in versions] == [0]
    a.ok("-r", "team", "pull", "ckpt:v0", "-o", "v0")
    assert tree_of(a.work / "v0") == files
    # an interrupted push is simply run again
    assert a.ok("push", "ckpt", "--to", "team").stdout.splitlines() == [
        "ckpt:v0 \u2192 team ckpt:v0  (already there)", "ckpt:v1 \u2192 team ckpt:v1"]
    b = machines("bob")
    b.ok("--root", url, "pull", "ckpt:v1", "-o", "v1")
    assert tree_of(b.work / "v1") == tree_of(a.work / "ckpt2")


def test_an_endpoint_that_dies_mid_pull_leaves_no_file_and_no_cached_blob(machines, s3_endpoint, s3_bucket):
    url = f"s3://{s3_bucket}/reg"
    files = {"big.bin": os.urandom(3 * BIG), "small.txt": b"small\n"}
    digests = _logged(machines("writer"), url, files)
    proxy = CuttableProxy(s3_endpoint.url)
    b = machines("bob", endpoint_env=False)
    b.ok("remote", "add", "team", url, "--endpoint", proxy.url)
    b.ok("config", "set", "--user", "remote.timeout", "2s")
    versions = json.loads(b.ok("-r", "team", "ls", "net", "--json").stdout)
    assert [v["version"] for v in versions] == [0]
    proxy.cut_after(BIG * 3 // 2, down=True)  # while the big blob streams down
    result = refused(b.run("-r", "team", "pull", "net", "-o", "out", timeout=120), 1)
    assert proxy.cut_done.is_set()
    assert proxy.url in result.stderr
    assert not (b.work / "out").exists() or not [p for p in (b.work / "out").rglob("*") if p.is_file()]
    assert not b.cached_blob(digests["big.bin"]).exists()
    assert not [p for p in (b.cache / "modelreg" / "tmp").iterdir()]  # no partial download left behind
    proxy.restart()
    b.ok("-r", "team", "pull", "net", "-o", "out")
    assert tree_of(b.work / "out") == files


def test_a_store_that_accepts_a_second_create_only_write_is_refused(machines, s3_endpoint, s3_bucket):
    """SPEC §7: the creation probe; a store that ignores If-None-Match is never used."""
    import boto3

    proxy = CuttableProxy(s3_endpoint.url)
    proxy.strip = b"if-none-match"
    a = machines("alice", endpoint_env=False)
    a.ok("remote", "add", "lax", f"s3://{s3_bucket}/lax", "--endpoint", proxy.url)
    checkpoint(a, "ckpt", {"w.bin": b"weights"})
    for args in (("-r", "lax", "init"), ("-r", "lax", "log", "ckpt"), ("init", f"s3://{s3_bucket}/lax")):
        result = refused(a.run(*args), 1)
        assert "second create-only write" in result.stderr and proxy.url in result.stderr
    s3 = boto3.client("s3", endpoint_url=s3_endpoint.url)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix="lax/").get("Contents", [])]
    assert keys == []  # no registry made, the probe's key removed


def test_the_probe_is_recorded_and_a_registry_copied_there_by_hand_is_probed_once(machines, s3_endpoint,
                                                                                 s3_bucket):
    import boto3

    a = machines("alice")
    a.ok("init", f"s3://{s3_bucket}/made")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint.url)
    made = s3.get_object(Bucket=s3_bucket, Key="made/config.toml")["Body"].read().decode()
    assert "[store]" in made and "create_only = true" in made
    # a registry copied into the bucket with a tool that knows nothing of the probe
    s3.put_object(Bucket=s3_bucket, Key="copied/config.toml", Body=b"format = 2\n")
    a.ok("--root", f"s3://{s3_bucket}/copied", "ls")
    copied = s3.get_object(Bucket=s3_bucket, Key="copied/config.toml")["Body"].read().decode()
    assert "create_only = true" in copied and "format = 2" in copied
    proxy = CuttableProxy(s3_endpoint.url)
    proxy.strip = b"if-none-match"  # recorded: later commands do not probe again
    b = machines("bob", endpoint_env=False)
    b.ok("remote", "add", "made", f"s3://{s3_bucket}/made", "--endpoint", proxy.url)
    b.ok("-r", "made", "ls")


def test_a_transfer_longer_than_the_timeout_is_not_cut_off(machines, s3_endpoint, s3_bucket):
    """remote.timeout bounds waiting for an answer, not moving a big blob: a download
    that takes several times the timeout on a slow link completes."""
    url = f"s3://{s3_bucket}/reg"
    files = {"big.bin": os.urandom(3 * BIG)}
    _logged(machines("writer"), url, files)
    proxy = CuttableProxy(s3_endpoint.url)
    proxy.rate = 3 * BIG / 4  # about 4 s down
    b = machines("bob", endpoint_env=False)
    b.ok("remote", "add", "team", url, "--endpoint", proxy.url)
    b.ok("config", "set", "--user", "remote.timeout", "1s")
    b.ok("-r", "team", "pull", "net", "-o", "out", timeout=120)
    assert tree_of(b.work / "out") == files


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("fault", ["missing bucket", "wrong endpoint", "no credentials"])
@pytest.mark.parametrize("command", ["ls", "log", "pull", "push", "init"])
def test_a_fault_is_one_clean_line_within_the_timeout(machines, s3_endpoint, s3_bucket, fault, command):
    a = machines("alice")
    good = f"s3://{s3_bucket}/reg"
    checkpoint(a, "ckpt", {"w.bin": b"weights"})
    if command == "push":
        a.ok("log", "ckpt")  # a local registry to push from
    if command == "pull":
        a.ok("--root", good, "log", "ckpt")  # a remote version to pull
    a.ok("config", "set", "--user", "remote.timeout", "1s")
    url, env = good, {"AWS_SECRET_ACCESS_KEY": SECRET}
    if fault == "missing bucket":
        url = "s3://modelreg-no-such-bucket/reg"
    elif fault == "wrong endpoint":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{_closed_port()}"
    else:
        env.update(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="", AWS_EC2_METADATA_DISABLED="true",
                   AWS_METADATA_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    args = {"ls": ("--root", url, "ls"), "log": ("--root", url, "log", "ckpt"),
            "pull": ("--root", url, "pull", "ckpt", "-o", "out"), "push": ("push", "ckpt", "--to", url),
            "init": ("init", url)}[command]
    if fault == "no credentials":
        env = {k: v for k, v in env.items() if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")}
        run_env = {k: v for k, v in a.env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        result = subprocess.run([a.binary, *args], cwd=a.work, env={**run_env, **env}, capture_output=True,
                                text=True, timeout=25, stdin=subprocess.DEVNULL)  # remote.timeout, not the 30 s default
    else:
        result = a.run(*args, env=env, timeout=25)
    refused(result, 1)
    assert SECRET not in result.stderr
    cause = {"missing bucket": "no such bucket", "wrong endpoint": "connection refused",
             "no credentials": "no AWS credentials"}[fault]
    assert cause in result.stderr
    assert not (a.work / "out").exists()


def test_a_repush_of_an_unchanged_version_sends_no_put(machines, s3_endpoint, s3_bucket):
    a = machines("alice")
    url = f"s3://{s3_bucket}/reg"
    checkpoint(a, "ckpt", {"w.bin": os.urandom(BIG), "cfg": b"c\n"})
    a.ok("log", "ckpt")
    a.ok("link", "ckpt:v0", "classifier")
    assert json.loads(a.ok("push", "classifier", "--to", url, "--json").stdout)[0]["new"] is True
    before = len(s3_endpoint.requests(s3_bucket))
    again = json.loads(a.ok("push", "classifier", "--to", url, "--json").stdout)
    assert [d["new"] for d in again] == [False, False]
    sent = [line for line in s3_endpoint.requests(s3_bucket)[before:]
            if re.search(r'"(PUT|POST|DELETE) ', line)]
    assert sent == []
    # a blob lost from the bucket is not taken for there: the same re-push uploads it again
    digest = file_digests(a, url, "ckpt:v0")["cfg"]
    s3_endpoint.client().delete_object(Bucket=s3_bucket, Key=f"reg/{layout.blob_key(digest)}")
    assert [d["new"] for d in json.loads(a.ok("push", "ckpt", "--to", url, "--json").stdout)] == [False]
    b = machines("bob")
    b.ok("--root", url, "pull", "classifier", "-o", "out")
    assert (b.work / "out/cfg").read_bytes() == b"c\n"


# -- 5. the library ---------------------------------------------------------------------------


def _library(m: Machine, call):
    """Run `call` with `m`'s environment (its HOME, config and cache)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(m.env)
    cwd = os.getcwd()
    os.chdir(m.work)
    try:
        return call()
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)


def test_the_library_on_a_registry_in_a_bucket(machines, s3_endpoint, s3_bucket, tree):
    a, b = machines("alice"), machines("bob")
    url = f"s3://{s3_bucket}/reg"
    local = modelreg.Registry.init(a.work)
    local.log(str(tree), name="resnet", metadata={"epoch": 1})

    def push():
        return local.push(["resnet"], url)

    pushed = _library(a, push)
    assert [(p.source, p.target, p.new) for p in pushed] == [("resnet:v0", "resnet:v0", True)]

    def use():
        reg = modelreg.Registry.open(url)
        assert reg.path is None and reg.location == url and reg.remote is not None
        assert reg.show("resnet:v0").metadata == {"epoch": 1}
        logged = reg.log(str(tree / "sub"), name="notes", metadata={"k": "v"})
        pulled = reg.pull("resnet:v0", b.work / "out")
        return logged, pulled

    logged, pulled = _library(b, use)
    assert (logged.ref, logged.new) == ("notes:v0", True)
    assert pulled.files == 5
    assert tree_of(b.work / "out") == tree_of(tree)
    assert b.ok("--root", url, "ls", "-q").stdout == "notes\nresnet\n"
    assert [p.new for p in _library(a, push)] == [False]
    with pytest.raises(modelreg.NotFound):
        _library(b, lambda: modelreg.Registry.open(f"s3://{s3_bucket}/nothing-here"))
