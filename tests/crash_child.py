"""Run the modelreg CLI, stopping at a chosen step so that a test can SIGKILL it right there.

    CRASH_AT=STEP[:N]   stop the N-th time (default: the first) STEP is reached
    CRASH_MARKER=PATH   created when the stop begins; the process then sleeps

Steps (each right after the named action, except `history`, which is right before it):
  writer     registered in locks/writers/
  staged     a blob copied into tmp/ (not yet published)
  blob       a blob published under objects/
  lock       a lock file taken (collection.lock, gc.lock)
  temp       a record/alias/config temp file written into tmp/
  published  a record linked into place (collection.json, vN.json), its temp not yet removed
  replaced   a file atomically replaced (alias, tombstone, index)
  history    about to append to history.jsonl
  appended   history appended, lock not yet released

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
    # util first: collections and registry import its functions by name when they load.
    from modelreg import util

    after(util, "write_temp", "temp")
    after(util, "create_file", "published")
    after(util, "replace_file", "replaced")

    from modelreg import collections, locks, store

    after(store.Store, "stage", "staged")
    after(store.Store, "publish", "blob")
    after(locks.FileLock, "acquire", "lock")
    after(locks.WriterRegistration, "__enter__", "writer")
    before(collections.Collection, "append_history", "history")
    after(collections.Collection, "append_history", "appended")


if __name__ == "__main__":
    install()
    from modelreg.cli.entry import main

    sys.argv = ["modelreg", *sys.argv[1:]]
    sys.exit(main())
