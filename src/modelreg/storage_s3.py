"""The storage interface (storage.py) on an object store: S3 and S3-compatible services.

Built on obstore (the Python bindings of Rust's `object_store`), which sends real
conditional writes both ways — create-only as `If-None-Match: *` and
replace-if-unchanged as `If-Match: <ETag>` — and does parallel multipart uploads, for
S3, GCS and Azure alike. Not both in one upload: with a conditional mode obstore sends
one plain PUT (checked with 0.12 on moto), which suits the format — records, claims and
snapshots are small, and blobs are named by their content, so they go unconditionally
(multipart) after a HEAD. s3fs offers create-only but no compare-and-swap; boto3 sends
both headers on `put_object` and `complete_multipart_upload`, but its managed
`upload_file` allows neither (s3transfer 0.19), and it is far heavier to import.
obstore is an optional extra (`pip install 'modelreg[s3]'`), imported only when a URL
is used.

Where things come from:
- the URL `s3://BUCKET/PREFIX`: every key lives under PREFIX;
- the endpoint: the `endpoint` argument, else `AWS_ENDPOINT_URL_S3`, else
  `AWS_ENDPOINT_URL`, else AWS itself; an `http://` endpoint (MinIO, moto on loopback)
  is allowed, and addressing is path-style unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`
  says otherwise;
- credentials: what `object_store` reads itself — `AWS_ACCESS_KEY_ID`,
  `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity (`AWS_WEB_IDENTITY_TOKEN_FILE`,
  `AWS_ROLE_ARN`), container credentials and the instance role — and, when no key is in
  the environment and a profile is named (`AWS_PROFILE`) or `~/.aws/credentials` or
  `~/.aws/config` exists, boto3's chain (profiles, SSO) if boto3 is installed; the
  region from `AWS_REGION` (or the profile), else us-east-1.

Every failure that is not an answer to the question asked (refused, unknown host,
access denied, no such bucket, a server that keeps failing) is one `Error` naming the
location, the endpoint and the cause; never a credential. Network faults are retried by
obstore with exponential backoff for at most `timeout` seconds per request, and once the
endpoint has been found unreachable the next requests within that time fail at once, so
a command that makes several requests still ends in about `timeout`, not a multiple.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from .errors import Error, InvalidInput
from .storage import KeyMissing, Listed, Storage

EXTRA_HINT = "pip install 'modelreg[s3]'"
DEFAULT_TIMEOUT = 30.0
SCHEMES = ("s3",)
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class RemoteError(Error):
    """A request to an object store failed for a reason other than its answer (exit 1)."""

    def __init__(self, message: str, hint: str | None = None, cause: str = "") -> None:
        super().__init__(message, hint)
        self.cause = cause


def is_url(location: str) -> bool:
    """Whether `location` names an object store rather than a path."""
    return "://" in str(location) and str(location).split("://", 1)[0].lower() in SCHEMES


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix`; InvalidInput for anything else."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise InvalidInput(f"{url}: {parts.scheme}:// object-store registries are not supported yet; "
                           "use s3://BUCKET/PREFIX (S3 and S3-compatible services)")
    if parts.query or parts.fragment or parts.username or parts.password or parts.port:
        raise InvalidInput(f"{url!r}: an s3:// URL names a bucket and a prefix only",
                           hint="credentials come from the environment or a profile, the endpoint "
                                "from AWS_ENDPOINT_URL")
    bucket = parts.hostname or ""
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise InvalidInput(f"{url!r}: {bucket!r} is not a valid bucket name",
                           hint="bucket names are 3-63 lowercase letters, digits, '.' and '-'")
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") for s in segments) or "//" in parts.path.strip("/"):
        raise InvalidInput(f"{url!r}: the prefix may not hold empty, '.' or '..' parts")
    return bucket, "/".join(segments)


def _import_obstore():
    try:
        import obstore
        import obstore.exceptions
        import obstore.store
    except ImportError:
        raise InvalidInput("object storage needs the optional extra: " + EXTRA_HINT, hint=EXTRA_HINT) from None
    return obstore


def _credential_provider(environ) -> object | None:
    """boto3's chain where the environment names a profile or one exists; else None
    (object_store's own chain: environment, web identity, container, instance role)."""
    if environ.get("AWS_ACCESS_KEY_ID"):
        return None
    home = Path(environ.get("HOME") or Path.home())
    files = (environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials",
             environ.get("AWS_CONFIG_FILE") or home / ".aws" / "config")
    if not environ.get("AWS_PROFILE") and not any(Path(f).expanduser().is_file() for f in files):
        return None
    try:
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        if environ.get("AWS_PROFILE"):
            raise InvalidInput("AWS_PROFILE needs boto3 to read profiles", hint="pip install boto3") from None
        return None
    try:
        return Boto3CredentialProvider()
    except ValueError:  # boto3 found no credentials either: object_store's chain may
        return None
    except Exception as exc:  # botocore: a named profile that does not exist, a bad file
        raise InvalidInput(f"cannot read AWS credentials: {type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class ObjectStorage(Storage):
    """A registry at `s3://bucket/prefix`; see the module docstring.

    Tokens for replace-if-unchanged are ETags. Times are the store's Last-Modified.
    """

    def __init__(self, url: str, endpoint: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        environ = os.environ  # obstore reads the rest of its settings from it too
        self.bucket, self.prefix = parse_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.timeout = float(timeout)
        if self.timeout <= 0:
            raise InvalidInput(f"remote timeout must be more than 0 seconds, not {timeout!r}")
        endpoint = endpoint or environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidInput(f"{endpoint!r}: an endpoint is an http:// or https:// URL")
            if parts.username or parts.password:
                raise InvalidInput("an endpoint URL may not hold credentials",
                                   hint="put them in the environment or a profile")
            endpoint = endpoint.rstrip("/")
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
        self.endpoint = endpoint or f"https://s3.{region or 'us-east-1'}.amazonaws.com"
        obstore = _import_obstore()
        self._ob = obstore
        self._errors = obstore.exceptions
        from datetime import timedelta

        step = min(self.timeout, 5.0)
        client = {"allow_http": self.endpoint.startswith("http://"),
                  "connect_timeout": timedelta(seconds=step),
                  # the whole request, not just the connect: records are small; blobs
                  # go through transfer_store(), whose limit grows with their size
                  "timeout": timedelta(seconds=max(self.timeout, 1.0))}
        retry = {"max_retries": 1000,  # bounded by time, not by count
                 "retry_timeout": timedelta(seconds=self.timeout),
                 "backoff": {"init_backoff": timedelta(milliseconds=100),
                             "max_backoff": timedelta(seconds=max(step / 2, 0.2)), "base": 2}}
        config = {}
        if endpoint:
            # obstore would let AWS_ENDPOINT_URL_S3 win over an endpoint given here
            config["endpoint"] = config["aws_endpoint_url_s3"] = endpoint
        if region:
            config["region"] = region
        # Every PUT and upload part carries its SHA-256, which the service checks before it
        # stores anything: a blob goes up under the name of its content unconditionally, so
        # bytes damaged on the way (an http:// endpoint has no TLS to catch it) must be
        # refused there, not found later by fsck. (Also what lets moto complete a
        # multipart upload without checksumming the whole object again.)
        config["checksum_algorithm"] = "sha256"
        self._settings = (client, retry, config)
        self._transfer_stores: dict[int, object] = {}
        try:
            self._store = obstore.store.S3Store(
                self.bucket, prefix=self.prefix or None, client_options=client, retry_config=retry,
                credential_provider=_credential_provider(environ), **config)
        except InvalidInput:
            raise
        except Exception as exc:  # a bad AWS_* setting in the environment
            raise InvalidInput(f"{self.url}: cannot configure the S3 client: {_first_line(exc)[:300]}") from None
        metadata = environ.get("AWS_METADATA_ENDPOINT") or "http://169.254.169.254"
        self._credential_sources = (metadata.rstrip("/") + "/", "169.254.170.2", "/latest/api/token",
                                    "AssumeRoleWithWebIdentity")
        self._down: tuple[float, RemoteError] | None = None
        self._bucket_seen = False

    def transfer_store(self, size: int):
        """The obstore client for moving a blob of `size` bytes in one request.

        object_store's `timeout` bounds a whole request, body included: with the records'
        limit a 2 GiB download would fail whenever it is slower than 70 MB/s. A blob's
        request may take `remote.timeout` plus one second per MiB (a link that slow is
        taken as stalled); limits are rounded up to a power of two, so few clients are made.
        """
        from datetime import timedelta

        needed = self.timeout + size / (1 << 20)
        limit = 1 << max(0, int(needed - 1).bit_length())
        if limit not in self._transfer_stores:
            client, retry, config = self._settings
            client = {**client, "timeout": timedelta(seconds=limit)}
            self._transfer_stores[limit] = self._ob.store.S3Store(
                self.bucket, prefix=self.prefix or None, client_options=client, retry_config=retry,
                credential_provider=_credential_provider(os.environ), **config)
        return self._transfer_stores[limit]

    # -- errors ----------------------------------------------------------------------

    def _call(self, op: str, key: str, request):
        """Run one request (a function calling obstore); obstore's errors that are not
        answers become RemoteError."""
        if self._down is not None:
            until, error = self._down
            if time.monotonic() < until:
                raise RemoteError(error.message, error.hint, error.cause)
            self._down = None
        try:
            result = _run(request)
        except (self._errors.AlreadyExistsError, self._errors.PreconditionError):
            raise
        except FileNotFoundError as exc:  # obstore's NotFoundError
            if "NoSuchBucket" in str(exc):
                raise self._failure(op, key, exc) from None
            raise KeyMissing(errno.ENOENT, "no such key", key) from None
        except Exception as exc:
            raise self._failure(op, key, exc) from None
        self._bucket_seen = True
        return result

    def _failure(self, op: str, key: str, exc: BaseException) -> RemoteError:
        text = str(exc)
        code = re.search(r"<Code>([A-Za-z]+)</Code>", text)
        code = code.group(1) if code else ""
        status = re.search(r"status code: ([0-9]{3})", text)
        status = int(status.group(1)) if status else None
        where = f"{self.url} (endpoint {self.endpoint})"
        gave_up = f"; gave up after {self.timeout:g} s"
        errors = self._errors
        if any(m in text for m in self._credential_sources):
            # object_store found no key in the environment and asked the instance or
            # container metadata service, which is not there or said no
            cause = "no credentials"
            message = (f"{where}: no AWS credentials found (environment, profile, web identity, "
                       f"container or instance role){gave_up if 'Connect' in text else ''}")
            hint = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (needs boto3)"
        elif code == "NoSuchBucket" or (status == 404 and op == "list"):
            cause, hint = "no such bucket", f"create the bucket {self.bucket!r} first, or check the URL"
            message = f"{where}: no such bucket {self.bucket!r}"
        elif (isinstance(exc, (errors.PermissionDeniedError, errors.UnauthenticatedError)) or status in (401, 403)
              or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken")):
            cause = "access denied"
            message = f"{where}: access denied{f' ({code})' if code else ''} on {op} {key or '/'}"
            hint = "check the AWS credentials (environment or profile) and the bucket's policy"
        elif "ConnectionRefused" in text or "Connection refused" in text:
            cause, hint = "connection refused", "check the endpoint (AWS_ENDPOINT_URL) and that the service runs"
            message = f"{where}: connection refused{gave_up}"
        elif "dns error" in text or "failed to lookup address" in text:
            cause, hint = "unknown host", "check the endpoint's host name (AWS_ENDPOINT_URL) and the network"
            message = f"{where}: unknown host {urlsplit(self.endpoint).hostname!r}{gave_up}"
        elif "timed out" in text.lower() or "TimedOut" in text or "Timeout" in text:
            cause, hint = "timed out", "check the network; `remote.timeout` sets how long to retry"
            message = f"{where}: no answer{gave_up}"
        elif (any(m in text for m in ("IncompleteMessage", "reset by peer", "ConnectionReset", "ConnectionAborted",
                                     "BrokenPipe", "UnexpectedEof", "connection was not ready"))
              or "connection closed" in text.lower()):
            cause, hint = "connection closed", "check the endpoint (AWS_ENDPOINT_URL): is it an S3 service?"
            message = f"{where}: the connection was closed without an answer{gave_up}"
        elif status is not None:
            cause = f"status {status}"
            hint = ("the bucket may be in another region: set AWS_REGION"
                    if status == 301 or code in ("PermanentRedirect", "AuthorizationHeaderMalformed") else None)
            message = f"{where}: {op} {key or '/'} failed: status {status}{f' {code}' if code else ''}"
            if status >= 500:
                message += gave_up
        elif "error sending request" in text or "connection" in text.lower():
            cause, hint = "connection failed", "check the endpoint (AWS_ENDPOINT_URL) and the network"
            message = f"{where}: connection failed{gave_up}"
        else:
            cause, hint = type(exc).__name__, None
            # obstore's first line holds the request URL but never a credential
            message = f"{where}: {op} {key or '/'} failed: {_first_line(exc)[:300]}"
        error = RemoteError(message, hint, cause)
        if cause in ("connection refused", "unknown host", "timed out", "connection closed", "connection failed",
                     "no credentials"):
            self._down = (time.monotonic() + self.timeout, error)
        return error

    # -- the interface ---------------------------------------------------------------

    def read_token(self, key: str) -> tuple[bytes, str]:
        def get():
            result = self._ob.get(self._store, key)
            return bytes(result.bytes()), result.meta.get("e_tag") or ""

        return self._call("get", key, get)

    def stat(self, key: str) -> Listed | None:
        try:
            meta = self._call("head", key, lambda: self._ob.head(self._store, key))
        except KeyMissing:
            # A HEAD's 404 has no body: a missing bucket looks like a missing key.
            self._check_bucket()
            return None
        return Listed(key, meta["size"], meta["last_modified"].timestamp())

    def _check_bucket(self) -> None:
        if not self._bucket_seen:
            from .util import temp_name

            self.list(f"tmp/{temp_name('bucket')}/")  # names no key; one request; NoSuchBucket raises

    def list(self, prefix: str, start_after: str | None = None) -> list[Listed]:
        """Keys under `prefix` (a plain string prefix, as the interface says), sorted.

        obstore's prefixes are whole path segments, so `a/b/c` is listed as `a/b/`
        filtered by the name's start; S3 returns keys in order, so the listing stops at
        the first key past the prefix.
        """
        head, _, stem = prefix.rpartition("/")
        found: list[Listed] = []

        def run():
            stream = self._ob.list(self._store, prefix=head or None, offset=start_after, chunk_size=1000)
            for chunk in stream:
                for meta in chunk:
                    path = meta["path"]
                    if not path.startswith(prefix):
                        if stem and path > prefix:
                            return
                        continue
                    found.append(Listed(path, meta["size"], meta["last_modified"].timestamp()))

        self._call("list", prefix, run)
        found.sort(key=lambda item: item.key)
        return found

    def create(self, key: str, data: bytes) -> bool:
        try:
            self._call("put", key, lambda: self._ob.put(self._store, key, data, mode="create"))
        except (self._errors.AlreadyExistsError, self._errors.PreconditionError):
            return False
        except RemoteError as exc:
            if exc.cause == "status 409":  # a concurrent conditional write of the same key (AWS)
                return False
            raise
        return True

    def replace(self, key: str, data: bytes, token: str | None) -> bool:
        if token is None:
            return self.create(key, data)
        try:
            self._call("put", key, lambda: self._ob.put(self._store, key, data, mode={"e_tag": token}))
        except (self._errors.AlreadyExistsError, self._errors.PreconditionError, KeyMissing):
            return False
        except RemoteError as exc:
            if exc.cause == "status 409":
                return False
            raise
        return True

    def put(self, key: str, data: bytes) -> None:
        self._call("put", key, lambda: self._ob.put(self._store, key, data, mode="overwrite"))

    def delete(self, key: str) -> bool:
        # S3 answers a DELETE alike whether or not the key existed; a HEAD tells.
        if self.stat(key) is None:
            return False
        self._call("delete", key, lambda: self._ob.delete(self._store, key))
        return True


def _run(request):
    """Call `request()`, a blocking obstore call, so that Ctrl-C still works.

    obstore's blocking calls hold their thread inside Rust until the request ends,
    retries included: on the main thread Ctrl-C would wait up to the whole timeout. So
    the main thread hands the call to a daemon thread and waits for it, interruptibly.
    (Not obstore's async calls under asyncio: with 0.12 they abort about one process in
    ten at exit, in its runtime's teardown.) Worker threads call directly: the main thread
    is already the one waiting.
    """
    if threading.current_thread() is not threading.main_thread():
        return request()
    box: dict = {}
    done = threading.Event()

    def work() -> None:
        try:
            box["value"] = request()
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="modelreg-request", daemon=True).start()
    done.wait()
    if "error" in box:
        raise box.pop("error")
    return box["value"]


def run_parallel(work, items: list, at_once: int) -> list:
    """`[work(item) for item in items]`, `at_once` at a time on daemon threads; the first
    error is raised once the running ones have ended, and no new item is started after it.
    The calling thread waits interruptibly (Ctrl-C leaves the daemons to the exit)."""
    if len(items) <= 1 or at_once <= 1:
        return [work(item) for item in items]
    results: list = [None] * len(items)
    errors: list = []
    lock = threading.Lock()
    queue = iter(range(len(items)))
    done = threading.Semaphore(0)
    workers = min(at_once, len(items))

    def worker() -> None:
        try:
            while True:
                with lock:
                    if errors:
                        return
                    i = next(queue, None)
                if i is None:
                    return
                try:
                    results[i] = work(items[i])
                except BaseException as exc:
                    with lock:
                        errors.append(exc)
                    return
        finally:
            done.release()

    for _ in range(workers):
        threading.Thread(target=worker, name="modelreg-transfer", daemon=True).start()
    for _ in range(workers):
        done.acquire()
    if errors:
        raise errors[0]
    return results


def probe_create_only(storage: Storage) -> bool:
    """Whether `storage` refuses a second create-only write of one key (SPEC §7).

    The probe key is a temp name (host, pid, random) under `tmp/`, so parallel probes
    never meet and a probe left behind by a kill is reclaimed by gc like any temp file.
    """
    from .util import temp_name

    key = f"tmp/{temp_name('probe')}"
    try:
        if not storage.create(key, b"first\n"):
            return False  # a fresh random key "exists": nothing this store says can be trusted
        second = storage.create(key, b"second\n")
        return not second and storage.read(key) == b"first\n"
    finally:
        try:
            storage.delete(key)
        except (Error, OSError):
            pass  # a leftover temp file: gc reclaims it
