#!/usr/bin/env python3
"""SPEC §8's object-store rows: modelreg against boto3 (and dvc) on one S3 endpoint.

    python bench/remote.py                      # 2 GiB file, best of 2; about 5 minutes
    python bench/remote.py --size 256M --reps 3 # a quick run
    python bench/remote.py --json out.json push pull-cold ls

The script starts its own `moto_server` on a free 127.0.0.1 port (a real S3 HTTP
endpoint; FIELD-NOTES), makes a bucket with boto3 and measures, in one run:

  push       `modelreg push big:v0 --to s3://BUCKET/push-N` of a version holding one
             `--size` file (default 2 GiB, incompressible), from a local registry to an
             empty registry at a fresh prefix  vs  boto3 `upload_file` of the same file
             (default TransferConfig) to another key                       target <= 1.2
             (both send a checksum with each part: SHA-256 for modelreg, CRC32 for boto3)
  pull-cold  `modelreg --root s3://… pull big:v0` with an empty cache (a fresh
             XDG_CACHE_HOME)  vs  boto3 `get_object` streamed to a file in 8 MiB
             chunks (`download_file`'s ranged GETs are 20x slower on moto)  target <= 1.2
  pull-warm  the same pull with the cache holding the blob  vs  `pull` of the same
             version from the local registry; both in the default mode (auto)
                                                                           target <= 1.15
  repush     the same push again: the blob PUTs it sends, and every byte it sends
             (through a counting relay in front of moto)                   target 0 bytes
  ls         `modelreg --root s3://… ls NAME --plain` of a collection with `--versions`
             (default 1,000) versions, logged one by one through the library; the
             requests counted from moto's log                              target <= 3
  dvc        `dvc push` of the same file to the same endpoint (a fresh remote prefix);
             only when dvc with dvc-s3 is found (`--dvc`, on PATH, /tmp/dvcvenv)

Every command runs as a fresh process (`python -m modelreg` with PYTHONPATH naming this
checkout's `src/`, `python -c` for boto3), so both sides pay interpreter start-up. The
two sides run alternately (A B, B A, …) with an untimed `sync` before each run; each
side's best run counts (`--reps`, default 2 for a file of 1 GiB or more, else 3), and
the median is shown too. Only ratios from one run mean anything: this machine's
absolute timings swing 2x. Everything the runs write goes to a scratch directory
(`--tmp`), removed afterwards unless `--keep`; objects are deleted from moto between
runs so that its memory and spool files stay small.

Not part of the test suite; asserts nothing: a missed target is printed as MISSED.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
from bench import human, machine, parse_size, rmtree, write_random  # noqa: E402

GiB = 1 << 30
BUCKET = "modelreg-bench"

BOTO_UPLOAD = r"""
import sys, boto3
path, bucket, key = sys.argv[1:4]
boto3.client("s3").upload_file(path, bucket, key)
"""

BOTO_GET = r"""
import sys, boto3
bucket, key, path = sys.argv[1:4]
body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
with open(path, "wb") as f:
    for chunk in body.iter_chunks(8 << 20):
        f.write(chunk)
"""

# Versions logged one by one, as a team's CI would: each is a commit of its own.
MAKE_VERSIONS = r"""
import sys, time
from pathlib import Path
from modelreg import Registry
url, count, work = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
work.mkdir(parents=True, exist_ok=True)
reg = Registry.open_or_init(url)
for n in range(count):
    f = work / "model.bin"
    f.write_bytes(b"weights %d\n" % n)
    reg.log(f, name="resnet", metadata={"epoch": n})
"""


# -- moto ------------------------------------------------------------------------------


class Moto:
    """moto_server on a free loopback port; requests are read from its log."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        if not binary:
            sys.exit("bench: moto_server is not installed (pip install 'moto[server]')")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.log = directory / "moto.log"
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(directory)}  # its spool files
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out,
                                         env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    sys.exit(f"bench: moto_server did not start: {self.log.read_text(errors='replace')[-500:]}")
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def mark(self) -> int:
        """Where the log ends now."""
        return self.log.stat().st_size

    def requests_since(self, mark: int, bucket: str = BUCKET) -> list[tuple[str, str]]:
        """(method, path) of each request moto logged for `bucket` since `mark`."""
        time.sleep(0.2)  # its log line is written after the answer
        with open(self.log, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        pattern = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (/%s[/? ]\S*)' % re.escape(bucket))
        return [(m.group(1), m.group(2)) for m in pattern.finditer(text)]


class CountingProxy:
    """A TCP relay in front of moto that counts the bytes clients send: the bytes a
    command uploaded, request lines and headers included."""

    def __init__(self, upstream: str) -> None:
        import threading

        host, port = upstream.rsplit("//", 1)[1].split(":")
        self.upstream = (host, int(port))
        self.sent = 0
        self._lock = threading.Lock()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 20)
                if not data:
                    break
                if count:
                    with self._lock:
                        self.sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


# -- runs ------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    modelreg: str
    reference: str
    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    target: float | None = None
    value: str = ""  # a count instead of timings
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return min(self.a) / min(self.b)

    def doc(self) -> dict:
        doc = {"workload": self.name, "modelreg": self.modelreg, "reference": self.reference, "target": self.target,
               "note": self.note}
        if self.a:
            doc.update(modelreg_s=self.a, reference_s=self.b, ratio_best=round(self.ratio, 3))
        else:
            doc["value"] = self.value
        doc["met"] = self.met
        return doc


class Run:
    def __init__(self, tmp: Path, size: int, reps: int, verbose: bool) -> None:
        self.tmp = tmp
        self.size = size
        self.reps = reps
        self.verbose = verbose
        self.moto = Moto(tmp)
        self.python = sys.executable
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MODELREG_", "AWS_")) and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
        env.update(PYTHONPATH=str(SRC), PYTHONPYCACHEPREFIX=str(tmp / "pycache"), NO_COLOR="1",
                   AWS_ENDPOINT_URL=self.moto.url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", HOME=str(tmp / "home"),
                   XDG_CONFIG_HOME=str(tmp / "home" / ".config"), XDG_CACHE_HOME=str(tmp / "home" / ".cache"),
                   DVC_NO_ANALYTICS="1")
        (tmp / "home").mkdir()
        self.env = env
        import boto3

        self.s3 = boto3.client("s3", endpoint_url=self.moto.url, region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")
        self.s3.create_bucket(Bucket=BUCKET)
        self.big = tmp / "data" / "big.bin"
        self.big.parent.mkdir()
        write_random(self.big, size, seed=b"big")
        self.local = tmp / "reg-local"  # "machine A": the registry where training logged
        self.call(self.mr("--root", self.local, "init", "-q"))
        self.call(self.mr("--root", self.local, "log", self.big, "-n", "big", "-q"))
        os.sync()

    def mr(self, *args) -> list[str]:
        return [self.python, "-m", "modelreg", *map(str, args)]

    def call(self, argv, env=None, cwd=None) -> str:
        proc = subprocess.run(list(map(str, argv)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env or self.env, cwd=cwd or self.tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, argv))} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
        return proc.stdout.decode()

    def timed(self, argv, prepare=None, env=None, cwd=None) -> float:
        if prepare:
            prepare()
        os.sync()
        start = time.perf_counter()
        self.call(argv, env=env, cwd=cwd)
        return time.perf_counter() - start

    def compare(self, row: Row, a, b, reps: int | None = None) -> Row:
        """a, b: rep -> (argv, prepare, env, cwd); run alternately."""
        for rep in range(reps or self.reps):
            order = ((row.a, a, "modelreg"), (row.b, b, "reference"))
            for times, side, label in (order if rep % 2 == 0 else order[::-1]):
                argv, prepare, env, cwd = side(rep)
                times.append(self.timed(argv, prepare, env, cwd))
                if self.verbose:
                    print(f"  {row.name} {label} rep {rep}: {times[-1]:.3f}s", file=sys.stderr)
        row.met = row.ratio <= row.target if row.target is not None else None
        return row

    def delete_prefix(self, prefix: str) -> None:
        """Free moto's copy of what a run uploaded (untimed)."""
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            keys += [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys[i:i + 1000]})

    def url(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}"

    # -- workloads ---------------------------------------------------------------------

    def push_target(self, prefix: str) -> str:
        """An empty registry at `prefix` (made untimed: the push measures the transfer)."""
        self.delete_prefix(prefix + "/")
        self.call(self.mr("init", self.url(prefix), "-q"))
        return self.url(prefix)

    def w_push(self) -> list[Row]:
        def ours(rep):
            return (self.mr("--root", self.local, "push", "big:v0", "--to", self.url("push"), "-q"),
                    lambda: self.push_target("push"), None, None)

        def boto(rep):
            return ([self.python, "-c", BOTO_UPLOAD, self.big, BUCKET, "boto/big.bin"],
                    lambda: self.delete_prefix("boto/"), None, None)

        row = self.compare(Row("push", f"push of a {human(self.size)} version", "boto3 upload_file", target=1.2),
                           ours, boto)
        return [row]

    def shared(self) -> str:
        """The registry the pulls read: `big:v0` pushed once to s3://BUCKET/reg."""
        url = self.url("reg")
        if not getattr(self, "_shared", False):
            self.call(self.mr("--root", self.local, "push", "big:v0", "--to", url, "-q"))
            self._shared = True
        return url

    def puller_env(self, name: str, fresh: bool) -> dict:
        """"Machine B": its own HOME and cache; `fresh` empties the cache."""
        home = self.tmp / name
        if fresh:
            rmtree(home)
        (home / ".cache").mkdir(parents=True, exist_ok=True)
        return dict(self.env, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                    XDG_CACHE_HOME=str(home / ".cache"))

    def w_pull_cold(self) -> Row:
        url = self.shared()
        out, ref_out = self.tmp / "pull-cold", self.tmp / "get.bin"
        # the object boto3 reads is the blob itself: the same bytes from the same store
        digest = json.loads(self.call(self.mr("--root", self.local, "ls", "big:v0", "--json")))[0]["digest"]
        key = f"reg/objects/{digest[:2]}/{digest[2:]}"
        self.s3.head_object(Bucket=BUCKET, Key=key)

        def ours(rep):
            env = self.puller_env("machine-b", fresh=True)
            return (self.mr("--root", url, "pull", "big:v0", "-o", out, "-q"), lambda: rmtree(out), env, None)

        def boto(rep):
            return ([self.python, "-c", BOTO_GET, BUCKET, key, ref_out], lambda: rmtree(ref_out), None, None)

        row = self.compare(Row("pull-cold", f"pull, empty cache ({human(self.size)})", "boto3 get_object streamed",
                               target=1.2), ours, boto)
        rmtree(ref_out)
        return row

    def w_pull_warm(self) -> Row:
        url = self.shared()
        env = self.puller_env("machine-c", fresh=True)
        out, ref_out = self.tmp / "pull-warm", self.tmp / "pull-local"
        self.call(self.mr("--root", url, "pull", "big:v0", "-o", out, "-q"), env=env)  # fills the cache

        def ours(rep):
            return (self.mr("--root", url, "pull", "big:v0", "-o", out, "-q"), lambda: rmtree(out), env, None)

        def local(rep):
            return (self.mr("--root", self.local, "pull", "big:v0", "-o", ref_out, "-q"), lambda: rmtree(ref_out),
                    None, None)

        row = self.compare(Row("pull-warm", f"pull, cached ({human(self.size)})", "pull from a local registry",
                               target=1.15), ours, local)
        rmtree(out)
        rmtree(ref_out)
        return row

    def w_repush(self) -> Row:
        url = self.shared()
        proxy = CountingProxy(self.moto.url)
        mark = self.moto.mark()
        try:
            self.call(self.mr("--root", self.local, "push", "big:v0", "--to", url, "-q"),
                      env=dict(self.env, AWS_ENDPOINT_URL=proxy.url))
        finally:
            proxy.close()
        requests = self.moto.requests_since(mark)
        blob_writes = [r for r in requests if r[0] in ("PUT", "POST") and "/objects/" in r[1]]
        counts = {m: sum(1 for r in requests if r[0] == m) for m in ("GET", "HEAD", "PUT", "POST", "DELETE")}
        row = Row("repush", "re-push of the unchanged version", "-",
                  value=f"{len(blob_writes)} blob PUTs; {proxy.sent:,} bytes sent", target=0, met=not blob_writes)
        row.note = (f"{len(requests)} requests ({', '.join(f'{n} {m}' for m, n in counts.items() if n)}): "
                    + "; ".join(f"{m} {p.split('/', 3)[-1][:60]}" for m, p in requests)
                    + f"; {proxy.sent:,} bytes sent in all, request lines and headers included")
        return row

    def w_ls(self, count: int) -> Row:
        url = self.url("many")
        began = time.perf_counter()
        self.call([self.python, "-c", MAKE_VERSIONS, url, count, self.tmp / "many-work"])
        made = time.perf_counter() - began
        out = self.call(self.mr("--root", url, "ls", "resnet", "--plain"))
        mark = self.moto.mark()
        lines = self.call(self.mr("--root", url, "ls", "resnet", "--plain")).splitlines()
        requests = self.moto.requests_since(mark)
        assert len(lines) == count == len(out.splitlines()), (len(lines), count)
        shown = "; ".join(f"{m} {p.split('/', 2)[-1][:48]}" for m, p in requests)
        row = Row("ls", f"ls NAME, {count:,} versions", "-", value=f"{len(requests)} requests", target=3,
                  met=len(requests) <= 3)
        row.note = f"{shown}; the {count:,} versions took {made:.0f} s to log one by one through the library"
        return row

    def w_dvc(self, dvc: str) -> Row:
        repo = self.tmp / "dvc-repo"
        rmtree(repo)
        repo.mkdir()
        shutil.copyfile(self.big, repo / "big.bin")
        self.call([dvc, "init", "--no-scm", "-q"], cwd=repo)
        self.call([dvc, "remote", "add", "-d", "bench", self.url("dvc")], cwd=repo)
        self.call([dvc, "remote", "modify", "bench", "endpointurl", self.moto.url], cwd=repo)
        self.call([dvc, "add", "-q", "big.bin"], cwd=repo)

        def dvc_push(rep):
            return ([dvc, "push", "-q"], lambda: self.delete_prefix("dvc/"), None, repo)

        def ours(rep):
            return (self.mr("--root", self.local, "push", "big:v0", "--to", self.url("push"), "-q"),
                    lambda: self.push_target("push"), None, None)

        version = self.call([dvc, "--version"]).strip()
        row = self.compare(Row("vs-dvc", f"push of a {human(self.size)} version", "dvc push (dvc-s3)"),
                           ours, dvc_push, reps=min(self.reps, 2))
        row.note = f"dvc {version}"
        self.delete_prefix("dvc/")
        self.delete_prefix("push/")
        rmtree(repo)
        return row


def find_dvc(given: str | None) -> str | None:
    for candidate in (given, shutil.which("dvc"), "/tmp/dvcvenv/bin/dvc", "/work/dvc-venv/bin/dvc"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


WORKLOADS = ("push", "pull-cold", "pull-warm", "repush", "ls", "dvc")


def report(rows: list[Row], header: list[str]) -> str:
    lines = [*header, ""]
    cols = ("workload", "modelreg", "reference", "modelreg best/med s", "reference best/med s", "ratio (best)",
            "target", "")
    table = []
    for r in rows:
        status = "" if r.met is None else ("met" if r.met else "MISSED")
        if r.a:
            table.append((r.name, r.modelreg, r.reference, f"{min(r.a):.3f} / {statistics.median(r.a):.3f}",
                          f"{min(r.b):.3f} / {statistics.median(r.b):.3f}", f"{r.ratio:.2f}",
                          f"<= {r.target:g}" if r.target is not None else "", status))
        else:
            table.append((r.name, r.modelreg, r.reference, r.value, "", "",
                          f"<= {r.target:g}" if r.target else "0", status))
    widths = [max(len(str(row[i])) for row in (cols, *table)) for i in range(len(cols))]

    def fmt(row):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"

    lines += [fmt(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, table), ""]
    lines += [f"- {r.name}: {r.note}" for r in rows if r.note]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="modelreg on S3 (moto on loopback) against boto3, as ratios.")
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help=f"default: all of {' '.join(WORKLOADS)}")
    parser.add_argument("--size", default="2G", help="size of the big file (default 2G)")
    parser.add_argument("--reps", type=int, help="timed runs of each side (default 2 for 1G or more, else 3)")
    parser.add_argument("--versions", type=int, default=1000, help="versions for the ls workload (default 1000)")
    parser.add_argument("--dvc", help="the dvc executable (default: on PATH, else /tmp/dvcvenv/bin/dvc)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--tmp", type=Path, help="scratch directory (default /work/bench-tmp if it exists, "
                        "else the system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every timing on stderr")
    args = parser.parse_args(argv)
    names = args.workloads or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}; they are {' '.join(WORKLOADS)}")
    size = parse_size(args.size)
    reps = args.reps or (2 if size >= GiB else 3)
    dvc = find_dvc(args.dvc) if "dvc" in names else None
    base = args.tmp or (Path("/work/bench-tmp") if Path("/work/bench-tmp").is_dir() else Path(tempfile.gettempdir()))
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="modelreg-rbench-", dir=base))
    header = machine(tmp)
    started = time.perf_counter()
    rows: list[Row] = []
    run = None
    try:
        run = Run(tmp, size, max(1, reps), args.verbose)
        run.call(run.mr("--help"))  # compile the bytecode before anything is timed
        run.call([run.python, "-c", "import boto3, obstore"])
        for name in names:
            if name == "dvc" and dvc is None:
                print("bench: dvc (with dvc-s3) not found; vs-dvc skipped", file=sys.stderr)
                continue
            print(f"bench: {name} …", file=sys.stderr)
            began = time.perf_counter()
            row = {"push": run.w_push, "pull-cold": run.w_pull_cold, "pull-warm": run.w_pull_warm,
                   "repush": run.w_repush, "ls": lambda: run.w_ls(args.versions),
                   "dvc": lambda: run.w_dvc(dvc)}[name]()
            print(f"bench: {name} took {time.perf_counter() - began:.0f} s", file=sys.stderr)
            rows.extend(row if isinstance(row, list) else [row])
    finally:
        if run is not None:
            run.moto.stop()
        if args.keep:
            print(f"bench: kept {tmp}", file=sys.stderr)
        else:
            rmtree(tmp)
    import boto3
    import obstore

    header.append(f"moto_server on 127.0.0.1; obstore {obstore.__version__}; boto3 {boto3.__version__}; "
                  f"{human(size)} file; best of {reps} runs of each side, alternating; every command a fresh "
                  f"process; whole run {time.perf_counter() - started:.0f} s; load average at end: "
                  + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(report(rows, header))
    if args.json:
        args.json.write_text(json.dumps({"machine": header, "rows": [r.doc() for r in rows]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
