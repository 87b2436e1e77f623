"""Issue 3: registered models, aliases, history, rm, diff, lineage and ls --sort/--where, through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import modelreg
from foundation_util import is_rfc3339_utc, manifest_path
from lifecycle_util import CLI, registry_state, write_ckpt


@pytest.fixture
def cli(script_runner):
    return CLI(script_runner)


@pytest.fixture
def work(isolated_env) -> Path:
    return isolated_env


@pytest.fixture
def resnet(work):
    """resnet v0..v2, each with different weights and metadata (set up through the API: faster)."""
    reg = modelreg.Registry.init(work)
    for n in range(3):
        reg.log(write_ckpt(work / f"r{n}", f"resnet {n}\n"), name="resnet", metadata={"epoch": n})
    return "resnet"


# -- link --------------------------------------------------------------------------------


def test_link_numbers_are_the_registered_models_own(cli, resnet):
    assert cli.line("link", "resnet:v2", "classifier") == "classifier:v0"
    assert cli.line("link", "resnet:v0", "classifier") == "classifier:v1"
    # one version in any number of registered models
    assert cli.line("link", "resnet:v2", "detector") == "detector:v0"
    assert cli.json("show", "resnet:v2")["links"] == ["classifier:v0", "detector:v0"]
    assert cli.json("show", "resnet:v1")["links"] == []
    rows = cli.json("ls", "resnet")
    assert {r["ref"]: r["links"] for r in rows} == {
        "resnet:v0": ["classifier:v1"], "resnet:v1": [], "resnet:v2": ["classifier:v0", "detector:v0"]}
    kinds = {c["name"]: (c["kind"], c["versions"], c["latest"]) for c in cli.json("ls")}
    assert kinds == {"classifier": ("registered", 2, 1), "detector": ("registered", 1, 0), "resnet": ("artifact", 3, 2)}
    assert [c["name"] for c in cli.json("ls", "--kind", "registered")] == ["classifier", "detector"]


def test_link_again_returns_the_existing_link_and_applies_aliases(cli, resnet, work):
    first = cli.json("link", "resnet:v1", "classifier", "-d", "kept")
    assert first["new"] is True
    cli("link", "resnet:v2", "classifier")
    again = cli("link", "resnet:v1", "classifier", "-a", "staging", "-a", "best", "--json", "-d", "ignored")
    doc = json.loads(again.stdout)
    assert (doc["ref"], doc["version"], doc["new"], doc["source"]) == ("classifier:v0", 0, False, "resnet:v1")
    assert sorted(doc["aliases"]) == ["best", "staging"]
    assert "already linked" in again.stderr
    assert [r["ref"] for r in cli.json("ls", "classifier")] == ["classifier:v0", "classifier:v1"]
    assert cli.json("show", "classifier:v0")["description"] == "kept"
    events = [e["event"] for e in cli.json("history", "classifier")]
    assert events == ["linked", "linked", "alias-set", "alias-set"]
    # -q prints only the ref, and stderr stays empty
    quiet = cli("link", "resnet:v1", "classifier", "-q")
    assert (quiet.stdout, quiet.stderr) == ("classifier:v0\n", "")


def test_linking_a_link_links_its_source(cli, resnet):
    cli("link", "resnet:v1", "classifier", "-a", "production")
    doc = cli.json("link", "classifier:production", "detector")
    assert (doc["ref"], doc["source"]) == ("detector:v0", "resnet:v1")
    assert cli.json("show", "detector:v0")["source"] == "resnet:v1"
    # and linking the link back into its own registered model is the existing link
    back = cli.json("link", "classifier:v0", "classifier")
    assert (back["ref"], back["new"]) == ("classifier:v0", False)
    record = json.loads(manifest_path(Path(".modelreg"), "detector", 0).read_text())
    assert record["source"]["name"] == "resnet" and record["source"]["version"] == 1


def test_names_are_unique_across_kinds(cli, resnet, work):
    cli("link", "resnet:v0", "classifier")
    before = registry_state(work)
    err = cli("link", "resnet:v1", "resnet", code=4).stderr
    assert "artifact" in err
    assert cli("log", write_ckpt(work / "c", "x\n"), "-n", "classifier", code=4).stderr.count("\n") <= 2
    # a name differing only by case is refused too
    cli("log", write_ckpt(work / "c", "x\n"), "-n", "Classifier", code=4)
    cli("link", "resnet:v1", "RESNET", code=4)
    assert registry_state(work) == before
    # the same name in another project is another collection
    assert cli.line("log", work / "c", "-n", "other/classifier") == "other/classifier:v0"


def test_registered_takes_defaults_not_refs_project(cli, work):
    env = {**os.environ, "MODELREG_PROJECT": "vision"}
    assert cli.line("log", write_ckpt(work / "a", "a\n"), "-n", "resnet", env=env) == "resnet:v0"
    # REF in project vision, REGISTERED bare: it lands in the default project
    doc = cli.json("link", "vision/resnet:v0", "classifier")
    assert (doc["ref"], doc["project"], doc["source"]) == ("classifier:v0", "default", "vision/resnet:v0")
    assert json.loads(Path(".modelreg/names/local/default/classifier.json").read_text())["kind"] == "registered"
    # and it may name any project, or entity/project
    doc = cli.json("link", "vision/resnet:v0", "prod/classifier")
    assert (doc["ref"], doc["project"], doc["entity"]) == ("prod/classifier:v0", "prod", "local")
    doc = cli.json("link", "vision/resnet:v0", "team/prod/classifier")
    assert (doc["ref"], doc["entity"], doc["project"]) == ("team/prod/classifier:v0", "team", "prod")
    # under the vision defaults the shortest forms change accordingly
    assert cli.json("show", "default/classifier:v0", env=env)["source"] == "resnet:v0"
    cli("link", "resnet:v0", "classifier:v1", code=2)


def test_latest_of_a_registered_model_is_the_most_recently_linked(cli, resnet):
    cli("link", "resnet:v2", "classifier")
    cli("link", "resnet:v0", "classifier")
    assert cli.json("show", "classifier:latest")["source"] == "resnet:v0"
    assert cli.json("show", "classifier")["ref"] == "classifier:v1"
    cli("rm", "classifier:v1")
    assert cli.json("show", "classifier")["ref"] == "classifier:v0"
    assert cli.line("link", "resnet:v0", "classifier") == "classifier:v2"  # v1 is not reused


def test_link_refuses_missing_and_bad_refs(cli, resnet, work):
    cli("link", "resnet:v9", "classifier", code=3)
    cli("link", "nothing:v0", "classifier", code=3)
    cli("link", "resnet:v0", "bad name", code=2)
    cli("link", "resnet:v0", "classifier", "-a", "v2", code=2)
    cli("link", "resnet:v0", "classifier", "-a", "latest", code=2)
    assert not (work / ".modelreg/names/local/default/classifier.json").exists()
    assert not (work / ".modelreg/collections/local/default/classifier").exists()


def test_link_alias_protection(cli, resnet):
    cli("link", "resnet:v0", "classifier", "-a", "production")  # first set is free
    cli("link", "resnet:v1", "classifier", "-a", "production", code=4)
    assert [r["ref"] for r in cli.json("ls", "classifier")] == ["classifier:v0"]  # all or none
    doc = cli.json("link", "resnet:v1", "classifier", "-a", "production", "--force", "--reason", "promote")
    assert doc["ref"] == "classifier:v1" and "production" in doc["aliases"]
    moved = cli.json("history", "classifier:production")[-1]
    assert (moved["event"], moved["from"], moved["to"], moved["reason"]) == ("alias-moved", 0, 1, "promote")


def test_log_alias_protection(cli, work):
    cli("log", write_ckpt(work / "a", "a\n"), "-n", "m", "-a", "production", "-q")
    cli("log", write_ckpt(work / "b", "b\n"), "-n", "m", "-a", "production", code=4)
    assert [r["ref"] for r in cli.json("ls", "m")] == ["m:v0"]
    assert cli.line("log", work / "b", "-n", "m", "-a", "production", "--force", "--reason", "r") == "m:v1"
    # identical content that would move it back needs --force too
    cli("log", work / "a", "-n", "m", "-a", "production", code=4)
    assert cli.json("show", "m:production")["version"] == 1


# -- alias -------------------------------------------------------------------------------


def test_alias_sets_and_moves_several_at_once(cli, resnet):
    doc = cli.json("alias", "resnet:v0", "best", "candidate")
    assert doc == {**doc, "ref": "resnet:v0", "aliases": ["best", "candidate"]}
    assert cli.line("alias", "resnet:v1", "best", "candidate", "-q") == "resnet:v1"
    assert cli.json("show", "resnet:best")["version"] == 1
    events = cli.json("history", "resnet:best")
    assert [(e["event"], e.get("from"), e["to"], e["version"]) for e in events] == \
        [("alias-set", None, 0, 0), ("alias-moved", 0, 1, 1)]
    # setting it where it already is changes nothing and records nothing
    n = len(cli.json("history", "resnet"))
    cli("alias", "resnet:v1", "best")
    assert len(cli.json("history", "resnet")) == n


def test_alias_is_all_or_none(cli, resnet, work):
    cli("alias", "resnet:v0", "production", "staging")
    before = registry_state(work)
    # staging could move, production may not without --force: neither moves
    cli("alias", "resnet:v2", "staging", "production", code=4)
    # one invalid alias among valid ones: exit 2, nothing set
    cli("alias", "resnet:v2", "fresh", "bad/alias", code=2)
    cli("alias", "resnet:v2", "fresh", "latest", code=2)
    assert registry_state(work) == before


def test_reserved_and_invalid_aliases_are_usage_errors(cli, resnet, work):
    before = registry_state(work)
    for name in ["latest", "v3", "v0", "none", "x.lock", "-x", "a" * 65, "é", "a/b"]:
        cli("alias", "resnet:v0", "--", name, code=2)
    assert registry_state(work) == before


CASE_COMMANDS = [["alias", "resnet:v1"], ["link", "resnet:v1", "classifier", "-a"], ["log", "r1", "-n", "resnet", "-a"]]


def test_aliases_differing_only_by_case_are_refused(cli, resnet, work):
    cli("alias", "resnet:v0", "best")
    cli("link", "resnet:v0", "classifier", "-a", "best")
    before = registry_state(work)
    for command in CASE_COMMANDS:
        err = cli(*command, "Best", code=4).stderr
        assert err.startswith("modelreg: error: alias 'Best' clashes") and "content unchanged" not in err
    assert registry_state(work) == before


def test_case_clash_within_one_command_is_refused(cli, resnet, work):
    cli("link", "resnet:v0", "classifier")
    before = registry_state(work)
    for command in CASE_COMMANDS:
        cli(*command, "best", *(["-a"] if command[-1] == "-a" else []), "BEST", code=4)
    # refused before anything is written: no new, empty collection is left behind
    cli("link", "resnet:v1", "fresh-reg", "-a", "best", "-a", "BEST", code=4)
    cli("log", work / "r1", "-n", "fresh-art", "-a", "best", "-a", "BEST", code=4)
    assert registry_state(work) == before
    assert sorted(c["name"] for c in cli.json("ls")) == ["classifier", "resnet"]


def test_an_alias_may_not_differ_from_latest_only_by_case(cli, resnet, work):
    before = registry_state(work)
    cli("alias", "resnet:v0", "Latest", code=4)
    cli("alias", "resnet:v0", "LATEST", code=4)
    assert registry_state(work) == before


def test_alias_expect_compare_and_swap(cli, resnet, work):
    cli("alias", "resnet:v0", "staging", "--expect", "none")  # none = not set yet
    cli("alias", "resnet:v0", "staging", "--expect", "none", code=4)  # it is set now
    before = registry_state(work)
    err = cli("alias", "resnet:v2", "staging", "--expect", "v1", code=4).stderr
    assert "v0" in err and "v1" in err
    cli("alias", "resnet:v2", "staging", "other", "--expect", "v0", code=4)  # other is unset: none move
    assert registry_state(work) == before
    doc = cli.json("alias", "resnet:v2", "staging", "--expect", "v0")
    assert doc["ref"] == "resnet:v2" and "staging" in doc["aliases"]
    # SELECTOR may be an alias or latest as well as vN
    cli("alias", "resnet:v1", "best")
    cli("alias", "resnet:v1", "staging", "--expect", "latest")
    assert cli.json("show", "resnet:staging")["version"] == 1


def test_alias_expect_naming_a_deleted_or_unknown_number_is_stale(cli, resnet, work):
    cli("alias", "resnet:v0", "staging")
    cli("rm", "resnet:v0", "--force")  # removes staging with v0
    before = registry_state(work)
    # the caller believed staging was at v0: the swap is stale, not "not found"
    cli("alias", "resnet:v1", "staging", "--expect", "v0", code=4)
    cli("alias", "resnet:v1", "staging", "--expect", "v7", code=4)
    assert registry_state(work) == before
    cli("alias", "resnet:v1", "staging", "--expect", "none")


def test_alias_delete(cli, resnet, work):
    cli("alias", "resnet:v0", "a", "b")
    cli("alias", "resnet:v1", "c", "production")
    before = registry_state(work)
    cli("alias", "--delete", "resnet", "a", "nope", code=3)  # an unset alias: exit 3, nothing removed
    cli("alias", "--delete", "resnet:v1", "c", "a", code=4)  # a is not at v1: exit 4, nothing removed
    cli("alias", "--delete", "resnet", "production", code=4)  # protected
    cli("alias", "--delete", "resnet", "latest", code=2)
    cli("alias", "--delete", "resnet", "a", "--expect", "v0", code=2)
    assert registry_state(work) == before
    assert cli.out("alias", "--delete", "resnet", "a", "-q") == "a\n"  # bare name: wherever it points
    assert cli.json("alias", "--delete", "resnet:v0", "b")["removed"] == [{"alias": "b", "ref": "resnet:v0"}]
    assert cli.out("alias", "--delete", "resnet:v1", "production", "c", "--force", "--reason", "retired") \
        == "production\nc\n"
    assert all(a == "latest" for r in cli.json("ls", "resnet") for a in r["aliases"])
    removed = cli.json("history", "resnet:production")[-1]
    assert (removed["event"], removed["from"], removed["version"], removed["reason"]) == \
        ("alias-removed", 1, 1, "retired")
    cli("alias", "--delete", "resnet", "a", code=3)


def test_protected_aliases_come_from_config(cli, resnet):
    cli("config", "set", "aliases.protected", "production,gold")
    cli("alias", "resnet:v0", "gold", "production")
    cli("alias", "resnet:v1", "gold", code=4)
    cli("alias", "resnet:v1", "gold", "--force")
    cli("config", "set", "aliases.protected", "gold")
    cli("alias", "resnet:v1", "production")  # no longer protected
    cli("rm", "resnet:v1", code=4)  # any alias protects from a plain rm


# -- history -----------------------------------------------------------------------------


def test_history_records_every_change(cli, resnet, work):
    cli("alias", "resnet:v0", "production", "--reason", "first")
    cli("link", "resnet:v0", "classifier", "-a", "staging")
    cli("rm", "resnet:v1")
    cli("rm", "resnet:v0", "--force", "--reason", "bad data")
    events = cli.json("history", "resnet")
    assert [(e["event"], e["version"]) for e in events] == [
        ("logged", 0), ("logged", 1), ("logged", 2), ("alias-set", 0), ("deleted", 1),
        ("alias-removed", 0), ("deleted", 0)]
    for e in events:
        assert {"time", "event", "user", "version"} <= set(e)
        assert is_rfc3339_utc(e["time"]) and isinstance(e["user"], str) and e["user"]
        assert all(isinstance(e[k], int) for k in ("version", "from", "to") if k in e)
    assert events[3]["reason"] == "first" and events[3]["to"] == 0
    assert events[5]["alias"] == "production" and events[5]["from"] == 0 and events[5]["reason"] == "bad data"
    assert events[6]["reason"] == "bad data"
    reg = cli.json("history", "classifier")
    assert reg[0]["event"] == "linked" and reg[0]["source"] == "resnet:v0" and reg[0]["version"] == 0
    assert cli.out("history", "resnet", "-q") == ""
    plain = cli.out("history", "resnet", "--plain").splitlines()
    assert len(plain) == len(events) and all("\t" in line for line in plain)
    cli("history", "nothing", code=3)


def test_history_after_rm_all(cli, resnet, work):
    cli("alias", "resnet:v2", "best")
    cli("rm", "resnet", "--all", code=4)
    assert cli.out("rm", "resnet", "--all", "--force", "--reason", "retired").splitlines() == \
        ["resnet:v0", "resnet:v1", "resnet:v2"]
    events = cli.json("history", "resnet")
    assert [e["event"] for e in events[-5:]] == ["deleted", "deleted", "alias-removed", "deleted", "collection-deleted"]
    assert events[-1]["reason"] == "retired"
    assert all("version" in e for e in events)
    assert "resnet" not in [c["name"] for c in cli.json("ls")]
    # numbers survive --all: logging again continues after the tombstones
    assert cli.line("log", write_ckpt(work / "r0", "resnet 0\n"), "-n", "resnet") == "resnet:v3"
    assert [r["version"] for r in cli.json("ls", "resnet")] == [3]
    cli("show", "resnet:v0", code=3)


# -- show, pull, ls REF and diff through links ------------------------------------------


def test_registered_refs_resolve_to_the_source(cli, resnet, work):
    cli("link", "resnet:v1", "classifier", "-a", "production", "-d", "the link")
    cli("alias", "resnet:v1", "best")
    shown = cli.json("show", "classifier:production")
    src = cli.json("show", "resnet:v1")
    assert shown["ref"] == "classifier:v0" and shown["collection"] == "classifier"
    assert sorted(shown["aliases"]) == ["latest", "production"]  # the link's own, not the source's
    assert shown["description"] == "the link"
    for key in ("digest", "size", "metadata", "files", "inputs", "producer"):
        assert shown[key] == src[key], key
    assert (shown["source"], shown["dangling"]) == ("resnet:v1", False)
    assert "source" not in src or src.get("source") in (None, "-")
    assert cli.json("ls", "classifier:production") == cli.json("ls", "resnet:v1")
    assert cli.json("diff", "classifier:production", "resnet:v1") == \
        {"added": [], "removed": [], "changed": [], "metadata": {}}
    out = cli.line("pull", "classifier:v0", "-o", work / "o", "-q")
    assert Path(out).resolve() == (work / "o").resolve()
    assert (work / "o" / "model.bin").read_text() == "resnet 1\n"
    assert cli.line("show", "classifier:production", "-q") == "classifier:v0"
    human = cli.out("show", "classifier:production")
    assert "resnet:v1" in human and "classifier:v0" in human


def test_diff(cli, work):
    write_ckpt(work / "a", "one\n", {"keep.txt": "same\n", "gone.txt": "bye\n", "run.sh": "#!/bin/sh\n"})
    write_ckpt(work / "b", "one\n", {"keep.txt": "same\n", "new.txt": "hi\n", "run.sh": "#!/bin/sh\n"})
    (work / "b" / "run.sh").chmod(0o755)
    (work / "b" / "model.bin").write_text("two\n")
    cli("log", work / "a", "-n", "m", "-m", "acc=0.5", "-m", "tag=x", "-q")
    cli("log", work / "b", "-n", "other", "-m", "acc=0.7", "-m", "epochs=3", "-q")
    doc = cli.json("diff", "m:v0", "other:v0")  # across artifacts
    assert doc == {**doc, "added": ["new.txt"], "removed": ["gone.txt"], "changed": ["model.bin", "run.sh"],
                   "metadata": {"acc": [0.5, 0.7], "epochs": [None, 3], "tag": ["x", None]}}
    assert cli.out("diff", "m:v0", "other:v0", "-q").splitlines() == ["gone.txt", "model.bin", "new.txt", "run.sh"]
    assert cli.json("diff", "m", "m:v0") == {"added": [], "removed": [], "changed": [], "metadata": {}}
    assert cli("diff", "m:v0", "m:v0").returncode == 0
    human = cli.out("diff", "m:v0", "other:v0")
    assert "new.txt" in human and "acc" in human
    cli("diff", "m:v0", "m:v5", code=3)


def test_diff_reads_no_blob(cli, work):
    cli("log", write_ckpt(work / "a", "a\n"), "-n", "m", "-q")
    cli("log", write_ckpt(work / "b", "b\n"), "-n", "m", "-q")
    objects = work / ".modelreg" / "objects"
    for blob in objects.rglob("*"):
        if blob.is_file():
            blob.chmod(0)
    try:
        assert cli.json("diff", "m:v0", "m:v1")["changed"] == ["model.bin"]
    finally:
        for blob in objects.rglob("*"):
            if blob.is_file():
                blob.chmod(0o444)


# -- rm ----------------------------------------------------------------------------------


def test_rm_refuses_aliased_or_linked_versions(cli, resnet, work):
    cli("alias", "resnet:v0", "best")
    cli("link", "resnet:v1", "classifier")
    before = registry_state(work)
    assert "best" in cli("rm", "resnet:v0", code=4).stderr
    assert "classifier:v0" in cli("rm", "resnet:v1", code=4).stderr
    cli("rm", "resnet", "--all", code=4)
    assert registry_state(work) == before
    assert cli.out("rm", "resnet:v2") == "resnet:v2\n"  # latest is computed: it does not protect
    assert cli.json("show", "resnet")["version"] == 1  # latest falls back to the highest remaining
    deleted = cli.json("rm", "resnet:best", "--force")["deleted"]
    assert [(d["ref"], d["version"], d["aliases"]) for d in deleted] == [("resnet:v0", 0, ["best"])]
    assert "best" not in json.dumps(cli.json("ls", "resnet"))


def test_deleting_a_linked_source_leaves_the_link_dangling(cli, resnet, work):
    cli("link", "resnet:v1", "classifier", "-a", "production")
    cli("rm", "resnet:v1", "--force")
    shown = cli("show", "classifier:production", "--json")
    doc = json.loads(shown.stdout)
    assert (doc["dangling"], doc["source"], doc["ref"]) == (True, "resnet:v1", "classifier:v0")
    assert "dangling" in shown.stderr and "warning" in shown.stderr
    assert "dangling" in cli("show", "classifier:production").stderr
    for args in (["pull", "classifier:production", "-o", work / "o"], ["diff", "classifier:v0", "resnet:v0"],
                 ["diff", "resnet:v0", "classifier:production"], ["ls", "classifier:v0"],
                 ["link", "classifier:v0", "detector"]):
        assert "dangling" in cli(*args, code=3).stderr
    assert not (work / "o").exists()
    # the same content logged again is a new version; the link still never resolves to it
    assert cli.line("log", work / "r1", "-n", "resnet") == "resnet:v3"
    cli("pull", "classifier:production", "-o", work / "o", code=3)
    assert cli.json("show", "classifier:v0")["dangling"] is True
    row = cli.json("ls", "classifier")[0]
    assert row["dangling"] is True and row["source"] == "resnet:v1"
    assert cli.json("show", "resnet:v3")["links"] == []


# -- lineage and ls --sort/--where -------------------------------------------------------


def test_lineage_inputs(cli, resnet, work):
    (work / "ds").mkdir()
    (work / "ds" / "train.csv").write_text("a,b\n")
    cli("log", work / "ds", "-n", "dataset", "-q")
    cli("link", "resnet:v1", "classifier", "-a", "production")
    cli("log", write_ckpt(work / "ft", "finetuned\n"), "-n", "ft", "--input", "dataset", "--input",
        "classifier:production", "-q")
    inputs = cli.json("show", "ft")["inputs"]
    assert [i["ref"] for i in inputs] == ["dataset:v0", "resnet:v1"]  # a link is recorded as its source
    assert inputs[0]["digest"] == cli.json("show", "dataset:v0")["digest"]
    assert inputs[1]["digest"] == cli.json("show", "resnet:v1")["digest"]
    assert "dataset:v0" in cli.out("show", "ft")
    cli("log", work / "ft", "-n", "ft2", "--input", "nothing:v0", code=3)
    assert not (work / ".modelreg/names/local/default/ft2.json").exists()
    assert not (work / ".modelreg/collections/local/default/ft2").exists()


def test_ls_sort_and_where(cli, work):
    accs = {0: 0.5, 1: 0.9, 2: 0.7, 3: None, 4: 0.9}
    for n, acc in accs.items():
        args = ["-m", f"val_acc={acc}"] if acc is not None else []
        cli("log", write_ckpt(work / f"c{n}", "x" * (n + 1)), "-n", "resnet", *args,
            "-m", f"opt={'adam' if n % 2 else 'sgd'}", "-q")
    refs = lambda *a: [line.split(":")[1] for line in cli.out("ls", "resnet", *a, "-q").splitlines()]  # noqa: E731
    assert refs("--sort", "-metadata.val_acc") == ["v1", "v4", "v2", "v0", "v3"]  # missing last
    assert refs("--sort", "metadata.val_acc") == ["v0", "v2", "v1", "v4", "v3"]
    assert refs("--sort", "-version") == ["v4", "v3", "v2", "v1", "v0"]
    assert refs("--sort", "-size") == ["v4", "v3", "v2", "v1", "v0"]
    assert refs("--sort", "created") == ["v0", "v1", "v2", "v3", "v4"]
    assert refs("--where", "metadata.opt=adam") == ["v1", "v3"]
    assert refs("--where", "metadata.val_acc=0.9") == ["v1", "v4"]
    assert refs("--where", "metadata.val_acc=0.90") == ["v1", "v4"]  # compared as JSON
    assert refs("--where", "metadata.opt=sgd", "--where", "metadata.val_acc=0.5") == ["v0"]
    assert refs("--where", "metadata.opt=adam", "--sort", "-metadata.val_acc") == ["v1", "v3"]
    assert refs("--where", "metadata.val_acc=\"0.9\"") == []
    rows = cli.json("ls", "resnet", "--sort", "-metadata.val_acc", "--where", "metadata.opt=adam")
    assert [r["version"] for r in rows] == [1, 3]
    cli("ls", "resnet", "--sort", "bogus", code=2)
    cli("ls", "resnet", "--where", "val_acc=1", code=2)
    # a registered model sorts by its sources' metadata
    cli("link", "resnet:v0", "classifier")
    cli("link", "resnet:v1", "classifier")
    assert refs_of(cli, "classifier", "--sort", "-metadata.val_acc") == ["classifier:v1", "classifier:v0"]


def refs_of(cli, name, *args):
    return cli.out("ls", name, *args, "-q").splitlines()


def test_ls_sort_pipes_to_head(work, resnet):
    import subprocess
    import sys

    shell = f"{sys.executable} -m modelreg ls resnet --sort -metadata.epoch -q | head -1"
    result = subprocess.run(shell, shell=True, capture_output=True, text=True, cwd=work)
    assert (result.returncode, result.stdout, result.stderr) == (0, "resnet:v2\n", "")
