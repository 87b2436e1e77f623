"""Shared fixtures: every test runs with its own HOME, cwd and no MODELREG_* settings."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Isolate HOME, the working directory and every MODELREG_* variable."""
    for key in list(os.environ):
        if key.startswith("MODELREG_") or key == "_MODELREG_COMPLETE":
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for key in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME"):  # they would lead past HOME to the real user's files
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "10")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work


@pytest.fixture
def modelreg_bin() -> str:
    """The installed console script, for tests that need real processes."""
    found = shutil.which("modelreg", path=str(Path(sys.executable).parent)) or shutil.which("modelreg")
    if not found:
        pytest.skip("modelreg console script is not installed")
    return found


@pytest.fixture
def mr(script_runner):
    """`mr("ls", "--json")`: run the installed console script in-process."""
    def run(*args, **kwargs):
        return script_runner.run(["modelreg", *map(str, args)], print_result=False, **kwargs)
    return run


def make_tree(root: Path, files: dict[str, bytes | str], executable=()) -> Path:
    """Write `files` (relative path -> content) under root; mark `executable` paths +x."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        if rel in executable:
            path.chmod(0o755)
    return root


@pytest.fixture
def tree(tmp_path):
    """A small checkpoint directory: nested files, an empty file and an executable."""
    return make_tree(tmp_path / "work" / "ckpt", {
        "model.bin": b"\x00\x01weights" * 100,
        "config.json": '{"layers": 3}\n',
        "empty": b"",
        "sub/deeper/notes.txt": "hello\n",
        "bin/run.sh": "#!/bin/sh\necho run\n",
    }, executable=("bin/run.sh",))


def run(*args, cwd=None, env=None, check=False):
    """Run the installed command as a real process."""
    return subprocess.run([sys.executable, "-m", "modelreg", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, check=check)


class S3Endpoint:
    """A moto_server on loopback: a real S3 HTTP endpoint; requests are counted from its log."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self._client = None
        self._serial = 0

    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                                        aws_access_key_id="testing", aws_secret_access_key="testing")
        return self._client

    def make_bucket(self) -> str:
        """A new, empty bucket with a name no other test uses."""
        self._serial += 1
        name = f"mr-test-{os.getpid()}-{self._serial}"
        self.client().create_bucket(Bucket=name)
        return name

    def requests(self, bucket: str) -> list[str]:
        """The request lines moto logged for `bucket` so far, oldest first."""
        import re

        mine = re.compile(r'"\S*(GET|PUT|HEAD|POST|DELETE) /%s[/? ]' % re.escape(bucket))
        return [line for line in self.log.read_text(errors="replace").splitlines() if mine.search(line)]


@contextlib.contextmanager
def moto_server(directory: Path, **env: str):
    """Run `moto_server` on a free 127.0.0.1 port until the block ends; an S3Endpoint.
    Skips the test when moto is not installed or does not start."""
    import socket
    import time
    import urllib.error
    import urllib.request

    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
    if not binary:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    pytest.importorskip("boto3", reason="boto3 makes the test buckets")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = directory / f"moto-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"moto_server did not start: {log.read_text(errors='replace')[-500:]}")
                time.sleep(0.1)
        yield S3Endpoint(url, log)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A real S3 endpoint for the whole session: `moto_server` on loopback."""
    with moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch):
    """A fresh bucket on the loopback endpoint, with the environment pointing at it; the
    bucket's name. Credentials are dummies: moto accepts any."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    return s3_endpoint.make_bucket()


# -- modelreg 0.1.0, the release that wrote format 1 ------------------------------------

OLD_RELEASE = "30aee38"  # modelreg 0.1.0: format-1 registries are built by its own code


class OldModelreg:
    """modelreg 0.1.0's code, unpacked from git; `run(...)` is a real 0.1.0 process."""

    def __init__(self, src: Path) -> None:
        self.src = src

    def env(self, root: Path | None = None, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
        env["PYTHONPATH"] = str(self.src)
        if root is not None:
            env["MODELREG_DIR"] = str(root)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def run(self, *args, root: Path | None = None, cwd=None, env_extra=None, timeout=120):
        return subprocess.run([sys.executable, "-m", "modelreg", *map(str, args)], cwd=cwd,
                              env=self.env(root, **(env_extra or {})), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def check(self, *args, **kwargs):
        proc = self.run(*args, **kwargs)
        assert proc.returncode == 0, f"0.1.0 `modelreg {' '.join(map(str, args))}` failed: {proc.stderr}"
        return proc


@pytest.fixture(scope="session")
def modelreg_010(tmp_path_factory) -> OldModelreg:
    """modelreg 0.1.0 from this repository's history (CI clones it with full history)."""
    repo = Path(__file__).resolve().parent.parent
    if not shutil.which("git"):
        pytest.skip("git is not installed: cannot unpack modelreg 0.1.0 to build a format-1 registry")
    known = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{OLD_RELEASE}^{{commit}}"],
                           capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"commit {OLD_RELEASE} (modelreg 0.1.0) is not in this clone (shallow?): "
                    "cannot build a format-1 registry")
    base = tmp_path_factory.mktemp("modelreg-0.1.0")
    archive = subprocess.run(["git", "-C", str(repo), "archive", OLD_RELEASE, "src/modelreg"],
                             capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
    return OldModelreg(base / "src")
