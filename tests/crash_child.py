"""Run the modelreg CLI, stopping at a chosen step so that a test can SIGKILL it right there.

    CRASH_AT=STEP[:N]   stop the N-th time (default: the first) STEP is reached
    CRASH_MARKER=PATH   created when the stop begins; the process then sleeps

Steps (each right after the named action, except `history`, which is right before it):
  writer     registered in locks/writers/
  staged     a blob copied into tmp/ (not yet published)
  blob       a blob published under objects/
  lock       a lock file taken (gc.lock, config.lock)
  temp       a temp file of the storage layer written into tmp/ (claim, manifest, record, snapshot)
  published  a file created create-only (name claim, manifest, change record)
  replaced   a derived file replaced (snapshot, config)
  history    about to publish a change record (format 2's commit, which holds the events)
  appended   a change record published, the snapshot not yet rewritten

The hooks wrap functions in this child process only; the product carries no test code.
"""

from __future__ import annotations

import os
import sys
import time

STEP, _, NTH = os.environ.get("CRASH_AT", "").partition(":")
NTH = int(NTH or 1)
_hits = 0


def point(step: str) -> None:
    global _hits
    if step != STEP:
        return
    _hits += 1
    if _hits != NTH:
        return
    marker = os.environ["CRASH_MARKER"]
    with open(marker + ".part", "w") as fh:
        fh.write(step)
    os.rename(marker + ".part", marker)
    time.sleep(120)
    os._exit(99)


def after(owner, name: str, step: str) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        point(step)
        return result

    setattr(owner, name, wrapper)


def before(owner, name: str, step: str) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        point(step)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def install() -> None:
    from modelreg import changes, locks, storage, store, util

    after(util, "replace_file", "replaced")
    after(storage.FsStorage, "_temp", "temp")
    after(storage.FsStorage, "create", "published")
    after(storage.FsStorage, "replace", "replaced")
    after(storage.FsStorage, "put", "replaced")
    after(store.Store, "stage", "staged")
    after(store.Store, "publish", "blob")
    after(locks.FileLock, "acquire", "lock")
    after(locks.WriterRegistration, "__enter__", "writer")
    before(changes.Collection, "_publish", "history")
    after(changes.Collection, "_publish", "appended")


if __name__ == "__main__":
    install()
    from modelreg.cli.entry import main

    sys.argv = ["modelreg", *sys.argv[1:]]
    sys.exit(main())
