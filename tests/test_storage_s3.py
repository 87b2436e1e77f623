"""The storage interface on S3 (storage_s3.ObjectStorage), against a real S3 endpoint on
loopback (moto_server): conditional writes both ways, listings from a start key, keys
under the URL's prefix, the create-only probe, the commit protocol's request budget,
and faults that end in one line naming the endpoint and the cause."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import moto_server
from modelreg.changes import Change, Collection
from modelreg.errors import Error, InvalidInput
from modelreg.refs import CollectionId
from modelreg.storage import MemoryStorage

pytest.importorskip("obstore", reason="the s3 extra is not installed")

from modelreg.storage_s3 import ObjectStorage, RemoteError, probe_create_only  # noqa: E402

SECRET = "not-a-real-secret-0123456789"


@pytest.fixture
def s3(s3_bucket):
    return ObjectStorage(f"s3://{s3_bucket}/team/reg", timeout=10)


def cid(name="art"):
    return CollectionId("local", "default", name)


def add_versions(count, start=0):
    """A build function making `count` versions visible in one record."""
    def build(state):
        add = {str(state["next"] + i): {"manifest": "cd" * 32, "digest": f"{start + i:064x}", "size": 1,
                                        "files": 1, "created": "t", "metadata": {}} for i in range(count)}
        return Change(events=[{"event": "logged", "version": int(n)} for n in add], aliases=state["aliases"],
                      add=add), None
    return build


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the interface ----------------------------------------------------------------------


def test_create_only_and_replace_if_unchanged_are_real_conditional_writes(s3):
    assert s3.create("changes/000000000000.json", b"first")
    assert not s3.create("changes/000000000000.json", b"second")  # If-None-Match: *
    data, token = s3.read_token("changes/000000000000.json")
    assert data == b"first" and token
    assert s3.replace("changes/000000000000.json", b"third", token)  # If-Match: the ETag read
    assert not s3.replace("changes/000000000000.json", b"fourth", token)  # that ETag is stale now
    assert s3.read("changes/000000000000.json") == b"third"
    assert s3.replace("snapshot.json", b"new", None)  # no token: the key must not exist yet
    assert not s3.replace("snapshot.json", b"newer", None)
    s3.delete("snapshot.json")
    assert not s3.replace("snapshot.json", b"again", token)  # a token for a key that is gone


def test_keys_live_under_the_urls_prefix_and_listings_start_after_a_key(s3_endpoint, s3_bucket):
    s3 = ObjectStorage(f"s3://{s3_bucket}/team/reg/", timeout=10)
    other = ObjectStorage(f"s3://{s3_bucket}/team/regx", timeout=10)
    for key in ("c/changes/000000000000.json", "c/changes/000000000001.json", "c/changes/000000000002.json",
                "c/snapshot.json", "c/changesX", "d/x"):
        assert s3.create(key, key.encode())
    other.create("c/changes/000000000009.json", b"elsewhere")
    stored = {o["Key"] for o in s3_endpoint.client().list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert "team/reg/c/changes/000000000000.json" in stored and "team/regx/c/changes/000000000009.json" in stored
    assert [i.key for i in s3.list("c/changes/")] == [
        "c/changes/000000000000.json", "c/changes/000000000001.json", "c/changes/000000000002.json"]
    assert [i.key for i in s3.list("c/changes/", start_after="c/changes/000000000000.json")] == [
        "c/changes/000000000001.json", "c/changes/000000000002.json"]
    assert s3.list("c/changes/", start_after="c/changes/000000000002.json") == []
    assert [i.key for i in s3.list("c/changes")] == [  # a plain string prefix, as on a filesystem
        "c/changes/000000000000.json", "c/changes/000000000001.json", "c/changes/000000000002.json",
        "c/changesX"]
    assert [i.key for i in s3.list("c/snap")] == ["c/snapshot.json"]
    assert len(s3.list("")) == 6 and s3.list("nothing/") == []


def test_stat_gives_size_and_the_stores_own_time(s3_endpoint, s3_bucket, s3):
    s3.create("objects/ab/cd", b"12345")
    listed = s3.stat("objects/ab/cd")
    head = s3_endpoint.client().head_object(Bucket=s3_bucket, Key="team/reg/objects/ab/cd")
    assert (listed.size, listed.mtime) == (5, head["LastModified"].timestamp())
    assert s3.list("objects/")[0] == listed
    assert s3.stat("objects/ab/ef") is None
    assert s3.local_path("objects/ab/cd") is None
    assert s3.delete("objects/ab/cd") and not s3.delete("objects/ab/cd")


def test_the_probe_finds_create_only_on_s3_and_refuses_a_store_without_it(s3):
    assert probe_create_only(s3) is True
    assert s3.list("tmp/") == []  # the probe cleans up after itself

    class Overwriting(MemoryStorage):  # what a store without If-None-Match does
        def create(self, key, data):
            self.objects[key] = (bytes(data), self._stamp(), time.time())
            return True

    assert probe_create_only(Overwriting()) is False
    assert probe_create_only(MemoryStorage()) is True


# -- the commit protocol on S3 ------------------------------------------------------------


def test_reading_a_collection_of_1000_versions_costs_at_most_3_requests(s3_endpoint, s3_bucket, s3):
    coll = Collection(s3, cid())
    coll.ensure("artifact")
    coll.commit(add_versions(1000))
    before = len(s3_endpoint.requests(s3_bucket))
    fresh = Collection(ObjectStorage(f"s3://{s3_bucket}/team/reg", timeout=10), cid())
    assert len(fresh.state()["versions"]) == 1000
    made = s3_endpoint.requests(s3_bucket)[before:]
    assert 1 <= len(made) <= 3, made  # the snapshot, one listing of the records after it


def test_parallel_writers_on_s3_get_distinct_numbers(s3_bucket):
    url = f"s3://{s3_bucket}/team/reg"
    Collection(ObjectStorage(url, timeout=10), cid()).ensure("artifact")
    got, errors = [], []

    def writer(i):
        try:  # each writer its own client, as separate machines would be
            got.append(Collection(ObjectStorage(url, timeout=10), cid()).commit(add_versions(1, start=i))[0]["seq"])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(got) == list(range(6))
    assert sorted(Collection(ObjectStorage(url, timeout=10), cid()).state()["versions"]) == list(range(6))


def test_a_create_that_happened_but_answered_with_an_error_is_recognised(s3):
    coll = Collection(s3, cid())
    coll.ensure("artifact")
    real_create = s3.create

    def create(key, data):
        real_create(key, data)
        raise RemoteError(f"{s3.url} (endpoint {s3.endpoint}): no answer", cause="timed out")

    s3.create = create
    _, record, _ = coll.commit(add_versions(1))
    s3.create = real_create
    assert record["seq"] == 0
    assert [i.key.rpartition("/")[2] for i in s3.list("collections/") if "/changes/" in i.key] == [
        "000000000000.json"]


def test_an_endpoint_given_wins_over_the_environment_and_calls_work_inside_an_event_loop(
        s3_endpoint, s3_bucket, monkeypatch):
    import asyncio

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed_port()}")
    s3 = ObjectStorage(f"s3://{s3_bucket}/reg", endpoint=s3_endpoint.url, timeout=3)
    assert s3.create("k", b"1")

    async def from_async_code():  # a notebook or an async service calling the library
        return s3.read("k"), [i.key for i in s3.list("")]

    assert asyncio.run(from_async_code()) == (b"1", ["k"])


# -- faults ---------------------------------------------------------------------------------


def assert_one_line(error, *parts):
    text = str(error)
    assert "\n" not in text and "Traceback" not in text and SECRET not in text
    assert "AKIAMODELREGTEST" not in text and SECRET not in (error.hint or "")
    for part in parts:
        assert part in text, text
    assert error.exit_code == 1 and isinstance(error, Error)


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAMODELREGTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)


def test_a_refused_connection_ends_within_the_timeout_naming_the_endpoint(secret_env):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    s3 = ObjectStorage("s3://some-bucket/reg", endpoint=endpoint, timeout=2)
    started = time.monotonic()
    for call in (lambda: s3.read("config.toml"), lambda: s3.create("a", b"1"), lambda: s3.list("a/")):
        with pytest.raises(RemoteError) as caught:
            call()
        assert_one_line(caught.value, endpoint, "connection refused", "s3://some-bucket/reg")
    # retried for the configured 2 s, not obstore's default 3 minutes
    assert time.monotonic() - started < 5 * 2


def test_an_endpoint_found_unreachable_is_not_retried_again_by_the_next_requests(secret_env):
    """One command makes several requests (and the commit protocol re-reads after a failed
    create): each must not wait the whole timeout again."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted = []

    def accept_and_hang_up():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=accept_and_hang_up, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        s3 = ObjectStorage("s3://some-bucket/reg", endpoint=endpoint, timeout=2)
        with pytest.raises(RemoteError) as caught:
            s3.read("config.toml")
        assert_one_line(caught.value, endpoint, "closed without an answer")
        tries = len(accepted)
        assert tries > 1  # retried with backoff
        for call in (lambda: s3.create("a", b"1"), lambda: s3.list("a/"), lambda: s3.stat("a")):
            with pytest.raises(RemoteError, match="closed without an answer"):
                call()
        assert len(accepted) == tries
    finally:
        server.close()


def test_an_unknown_host_is_named(secret_env):
    s3 = ObjectStorage("s3://some-bucket", endpoint="http://modelreg-no-such-host.invalid:9000", timeout=2)
    with pytest.raises(RemoteError) as caught:
        s3.read("config.toml")
    assert_one_line(caught.value, "unknown host", "modelreg-no-such-host.invalid")


def test_a_bucket_that_does_not_exist_is_no_such_bucket_whatever_the_request(s3_endpoint, secret_env):
    for call in (lambda s: s.read("config.toml"), lambda s: s.create("a", b"1"), lambda s: s.list("a/"),
                 lambda s: s.stat("config.toml"), lambda s: s.put("a", b"1")):
        s3 = ObjectStorage("s3://modelreg-missing-bucket/reg", endpoint=s3_endpoint.url, timeout=3)
        with pytest.raises(RemoteError) as caught:
            call(s3)
        assert_one_line(caught.value, "no such bucket", "modelreg-missing-bucket", s3_endpoint.url)


def test_bad_credentials_are_access_denied(tmp_path, secret_env):
    # moto checks signatures only when told to; a second server, with auth on
    with moto_server(tmp_path, INITIAL_NO_AUTH_ACTION_COUNT="0") as strict:
        for call in (lambda s: s.read("config.toml"), lambda s: s.create("a", b"1"), lambda s: s.list("a/"),
                     lambda s: s.stat("config.toml")):
            s3 = ObjectStorage("s3://some-bucket/reg", endpoint=strict.url, timeout=3)
            with pytest.raises(RemoteError) as caught:
                call(s3)
            assert_one_line(caught.value, "access denied", strict.url)
            assert "AWS credentials" in caught.value.hint


def test_credentials_come_from_a_profile_and_their_absence_is_named(s3_bucket, monkeypatch, tmp_path):
    pytest.importorskip("boto3", reason="profiles are read through boto3")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    # no instance role here, whatever machine runs the tests
    monkeypatch.setenv("AWS_METADATA_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(RemoteError) as caught:
        ObjectStorage(f"s3://{s3_bucket}/reg", timeout=2).create("k", b"1")
    assert_one_line(caught.value, "no AWS credentials")
    aws = tmp_path / "home" / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        f"[team]\naws_access_key_id = AKIAMODELREGTEST\naws_secret_access_key = {SECRET}\n")
    monkeypatch.setenv("AWS_PROFILE", "team")
    assert ObjectStorage(f"s3://{s3_bucket}/reg", timeout=2).create("k", b"1")
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(InvalidInput) as caught:
        ObjectStorage(f"s3://{s3_bucket}/reg", timeout=2)
    assert "nobody" in str(caught.value) and SECRET not in str(caught.value)


def test_without_the_extra_a_url_is_invalid_input_naming_it(monkeypatch):
    for name in ("obstore", "obstore.store", "obstore.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(InvalidInput) as caught:
        ObjectStorage("s3://some-bucket/reg")
    assert caught.value.exit_code == 2 and "modelreg[s3]" in str(caught.value)


@pytest.mark.parametrize("url", ["s3://B/reg", "s3://b/reg", "gs://bucket/x", "s3://bucket/a/../b",
                                 "s3://key:secret@bucket/x", "s3://bucket/x?endpoint=y", "s3:///x"])
def test_a_bad_url_is_invalid_input(url):
    with pytest.raises(InvalidInput):
        ObjectStorage(url)


def test_ctrl_c_interrupts_a_request_that_is_still_retrying(secret_env):
    script = (
        # A shell runs background jobs with SIGINT ignored, and Python keeps an inherited
        # SIG_IGN: Ctrl-C is given back its default meaning, as a terminal's process has it.
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from modelreg.storage_s3 import ObjectStorage\n"
        "s3 = ObjectStorage('s3://some-bucket/reg', endpoint=sys.argv[1], timeout=120)\n"
        "print('started', flush=True)\n"
        "try:\n"
        "    s3.read('config.toml')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, f"http://127.0.0.1:{closed_port()}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "started\n"
        time.sleep(0.5)  # into the retries (sooner only makes the test easier)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)  # not the 120 s of retrying
    finally:
        proc.kill()
        proc.wait()
    assert out == "interrupted\n", err
