"""Issue 3: the lifecycle of a model, played end to end through the CLI.

A training run logs five versions; the best goes to staging and then to production in
the registered model `classifier`, by compare-and-swap, with protection and a reason;
a second run's model joins the same registered model. Every refusal along the way
changes nothing.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest

from foundation_util import is_rfc3339_utc
from lifecycle_util import CLI, registry_state, write_ckpt

VAL_ACC = [0.71, 0.78, 0.80, 0.91, 0.85]  # v3 is the best


@pytest.fixture
def cli(script_runner):
    return CLI(script_runner)


def test_the_lifecycle_story(cli, isolated_env):
    work: Path = isolated_env
    # -- a training run logs run-abc-model v0..v4; v1 goes to production early on ------
    for n, acc in enumerate(VAL_ACC):
        ckpt = write_ckpt(work / f"ckpt{n}", f"weights of epoch {n}\n")
        ref = cli.line("log", ckpt, "-n", "run-abc-model", "-m", f"val_acc={acc}", "-m", f"epoch={n}",
                       "--run", "abc")
        assert ref == f"run-abc-model:v{n}"
        if n == 1:
            linked = cli.json("link", "run-abc-model:v1", "classifier", "-a", "production", "-d", "first candidate")
            assert linked["ref"] == "classifier:v0"
            assert linked["new"] is True
            assert linked["source"] == "run-abc-model:v1"
            assert linked["version"] == 0
            assert sorted(linked["aliases"]) == ["latest", "production"]
            assert {"ref", "collection", "entity", "project", "version", "digest", "aliases", "new", "source"} \
                <= set(linked)
            assert (linked["collection"], linked["entity"], linked["project"]) == ("classifier", "local", "default")

    # -- the best by ls --sort is v3 ------------------------------------------------------
    ranked = cli.out("ls", "run-abc-model", "--sort", "-metadata.val_acc", "-q").splitlines()
    assert ranked[0] == "run-abc-model:v3"
    assert ranked == [f"run-abc-model:v{n}" for n in (3, 4, 2, 1, 0)]
    best = ranked[0]
    v3 = cli.json("show", best)
    assert v3["metadata"] == {"val_acc": 0.91, "epoch": 3}

    # -- v3 is linked with alias staging ------------------------------------------------
    staged = cli.json("link", best, "classifier", "-a", "staging")
    assert (staged["ref"], staged["version"], staged["new"], staged["source"]) == \
        ("classifier:v1", 1, True, "run-abc-model:v3")
    assert staged["digest"] == v3["digest"]

    # linking twice is a no-op: the same link, new false, nothing written
    before = registry_state(work)
    again = cli("link", best, "classifier")
    assert again.stdout == "classifier:v1\n"
    assert cli.json("link", best, "classifier")["new"] is False
    assert registry_state(work) == before

    # a stale --expect (production is at v0, not v1) changes nothing and exits 4
    stale = cli("alias", "classifier:v1", "production", "--expect", "v1", "--force", "--reason", "x", code=4)
    assert "expected" in stale.stderr
    assert registry_state(work) == before

    # moving production without --force exits 4, even with the right --expect
    refused = cli("alias", "classifier:v1", "production", "--expect", "v0", code=4)
    assert "protected" in refused.stderr
    assert registry_state(work) == before

    # rm of the production version (the link, or its source) without --force exits 4
    cli("rm", "classifier:v0", code=4)
    cli("rm", "run-abc-model:v1", code=4)
    assert registry_state(work) == before

    # -- production moves to v3: compare-and-swap, forced, with a reason -----------------
    moved = cli.json("alias", "classifier:v1", "production", "--expect", "v0", "--force",
                     "--reason", "beats v0 on eval")
    assert moved["ref"] == "classifier:v1"
    assert sorted(moved["aliases"]) == ["latest", "production", "staging"]

    # pull classifier:production gives v3's bytes, in ./classifier-v1 by default
    pulled = cli.line("pull", "classifier:production")
    assert Path(pulled).resolve() == (work / "classifier-v1").resolve()
    assert (work / "classifier-v1" / "model.bin").read_text() == "weights of epoch 3\n"
    assert (work / "classifier-v1" / "config.json").read_text() == '{"layers": 2}\n'
    # show of the link: the link's own number, aliases and description, the source's content
    shown = cli.json("show", "classifier:production")
    assert (shown["ref"], shown["kind"], shown["version"], shown["source"], shown["dangling"]) == \
        ("classifier:v1", "registered", 1, "run-abc-model:v3", False)
    assert shown["digest"] == v3["digest"] and shown["metadata"] == v3["metadata"]
    assert [f["path"] for f in shown["files"]] == ["config.json", "model.bin"]
    assert {"ref", "collection", "kind", "version", "digest", "size", "created", "aliases", "metadata", "description",
            "inputs", "producer", "files", "links", "source", "dangling"} <= set(shown)
    assert cli.json("show", "classifier:v0")["description"] == "first candidate"

    # -- a second training run's model joins the same registered model -------------------
    other = write_ckpt(work / "def-ckpt", "weights of run def\n")
    assert cli.line("log", other, "-n", "run-def-model", "-m", "val_acc=0.93", "--run", "def") == "run-def-model:v0"
    assert cli.line("link", "run-def-model:latest", "classifier") == "classifier:v2"
    rows = {r["ref"]: r for r in cli.json("ls", "classifier")}
    assert {ref: row["source"] for ref, row in rows.items()} == {
        "classifier:v0": "run-abc-model:v1", "classifier:v1": "run-abc-model:v3", "classifier:v2": "run-def-model:v0"}
    assert "latest" in rows["classifier:v2"]["aliases"]  # latest = the most recently linked
    assert cli.json("show", "classifier")["ref"] == "classifier:v2"

    # show run-abc-model:v3 lists classifier
    assert cli.json("show", "run-abc-model:v3")["links"] == ["classifier:v1"]
    assert "classifier" in cli.out("show", "run-abc-model:v3")

    # -- history classifier: every step in order, with who and when ----------------------
    events = cli.json("history", "classifier")
    steps = [(e["event"], e.get("alias"), e.get("from"), e.get("to"), e["version"], e.get("source")) for e in events]
    assert steps == [
        ("linked", None, None, None, 0, "run-abc-model:v1"),
        ("alias-set", "production", None, 0, 0, None),
        ("linked", None, None, None, 1, "run-abc-model:v3"),
        ("alias-set", "staging", None, 1, 1, None),
        ("alias-moved", "production", 0, 1, 1, None),
        ("linked", None, None, None, 2, "run-def-model:v0"),
    ]
    assert events[4]["reason"] == "beats v0 on eval"
    assert all(e["user"] == getpass.getuser() for e in events)
    assert all(is_rfc3339_utc(e["time"]) for e in events)
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    # the human and plain forms carry the same steps
    plain = [line.split("\t") for line in cli.out("history", "classifier", "--plain").splitlines()]
    assert [row[1] for row in plain] == [s[0] for s in steps]
    human = cli.out("history", "classifier")
    assert "beats v0 on eval" in human and getpass.getuser() in human and events[0]["time"][:10] in human
    # one alias's story
    production = cli.json("history", "classifier:production")
    assert [(e["event"], e.get("from"), e["to"]) for e in production] == [("alias-set", None, 0), ("alias-moved", 0, 1)]

    # -- a deleted number is never reused --------------------------------------------------
    assert cli.out("rm", "run-abc-model:v4") == "run-abc-model:v4\n"
    assert cli.line("log", write_ckpt(work / "ckpt5", "epoch 5\n"), "-n", "run-abc-model") == "run-abc-model:v5"
    assert cli.line("show", "run-abc-model", "-q") == "run-abc-model:v5"
    cli("show", "run-abc-model:v4", code=3)
    history = cli.json("history", "run-abc-model")
    assert [e["event"] for e in history] == ["logged"] * 5 + ["deleted", "logged"]
    assert [e["version"] for e in history] == [0, 1, 2, 3, 4, 4, 5]
    assert history[0]["event"] == "logged" and is_rfc3339_utc(history[0]["time"])
    assert json.loads(cli.out("ls", "run-abc-model", "--json"))[-1]["version"] == 5
