"""Output modes (SPEC §3): --json documents and their keys, --plain rows, -q ids, the `ls` forms."""

from __future__ import annotations

import json

import pytest

from conftest import make_tree
from foundation_util import assert_error, is_rfc3339_utc, ok, one_json

HEX64 = "0123456789abcdef"


def is_digest(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= set(HEX64)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@pytest.fixture
def populated(mr, tree, tmp_path):
    """ckpt:v0, ckpt:v1 (aliased best, epoch metadata) and vision/resnet:v0."""
    ok(mr("log", tree, "-m", "epoch=1"))
    (tree / "model.bin").write_bytes(b"better weights")
    ok(mr("log", tree, "-a", "best", "-m", "epoch=2"))
    ok(mr("log", make_tree(tmp_path / "r", {"r.bin": "r"}), "-n", "vision/resnet"))
    return tree


# -- --json ------------------------------------------------------------------------------


def test_log_json_has_spec_keys_and_types(mr, tree):
    doc = one_json(mr("log", tree, "-a", "best", "--json"))
    assert doc == {**doc, "ref": "ckpt:v0", "collection": "ckpt", "entity": "local", "project": "default",
                   "version": 0, "new": True}
    assert is_int(doc["version"]) and is_digest(doc["digest"])
    assert sorted(doc["aliases"]) == ["best", "latest"]


def test_ls_json_lists_every_collection_with_spec_keys(mr, populated):
    docs = one_json(mr("ls", "--json"))
    assert isinstance(docs, list) and len(docs) == 2
    by_name = {(d["project"], d["name"]): d for d in docs}
    ckpt = by_name[("default", "ckpt")]
    assert ckpt["entity"] == "local" and ckpt["kind"] == "artifact"
    assert (ckpt["versions"], ckpt["latest"], ckpt["aliases"]) == (2, 1, {"best": 1})
    for doc in docs:
        assert is_int(doc["versions"]) and is_int(doc["latest"]) and is_int(doc["size"])
        assert is_rfc3339_utc(doc["updated"])
        assert all(is_int(v) for v in doc["aliases"].values())
    assert by_name[("vision", "resnet")]["size"] == 1


def test_ls_project_lists_one_projects_collections(mr, populated):
    assert [d["name"] for d in one_json(mr("ls", "vision/", "--json"))] == ["resnet"]
    assert [d["name"] for d in one_json(mr("ls", "local/vision/", "--json"))] == ["resnet"]
    assert [d["name"] for d in one_json(mr("ls", "default/", "--json"))] == ["ckpt"]
    assert ok(mr("ls", "vision/", "-q")) == "vision/resnet\n"
    assert_error(mr("ls", "nosuch/"), 3)


def test_ls_name_json_lists_versions_with_spec_keys(mr, populated):
    docs = one_json(mr("ls", "ckpt", "--json"))
    assert [d["ref"] for d in docs] == ["ckpt:v0", "ckpt:v1"]
    assert [d["version"] for d in docs] == [0, 1]
    assert sorted(docs[1]["aliases"]) == ["best", "latest"] and docs[0]["aliases"] == []
    assert [d["metadata"] for d in docs] == [{"epoch": 1}, {"epoch": 2}]
    for doc in docs:
        assert is_digest(doc["digest"]) and is_int(doc["size"]) and doc["files"] == 5
        assert is_rfc3339_utc(doc["created"]) and doc["links"] == []


def test_ls_ref_json_lists_the_files(mr, populated):
    docs = one_json(mr("ls", "ckpt:best", "--json"))
    assert [d["path"] for d in docs] == ["bin/run.sh", "config.json", "empty", "model.bin", "sub/deeper/notes.txt"]
    by_path = {d["path"]: d for d in docs}
    assert by_path["model.bin"]["size"] == len(b"better weights")
    assert by_path["bin/run.sh"]["executable"] is True and by_path["empty"]["executable"] is False
    assert all(is_digest(d["digest"]) and set(d) >= {"path", "size", "digest", "executable"} for d in docs)


def test_show_json_has_spec_keys_and_types(mr, populated, tree):
    doc = one_json(mr("show", "ckpt:v1", "--json"))
    assert {"ref", "collection", "kind", "version", "digest", "size", "created", "aliases", "metadata",
            "description", "inputs", "producer", "files", "links"} <= set(doc)
    assert (doc["ref"], doc["collection"], doc["kind"], doc["version"]) == ("ckpt:v1", "ckpt", "artifact", 1)
    assert (doc["entity"], doc["project"]) == ("local", "default")
    assert is_digest(doc["digest"]) and is_rfc3339_utc(doc["created"])
    assert doc["size"] == sum(f["size"] for f in doc["files"])
    assert sorted(doc["aliases"]) == ["best", "latest"]
    assert doc["metadata"] == {"epoch": 2} and doc["description"] == "" and doc["inputs"] == []
    assert doc["files"] == one_json(mr("ls", "ckpt:v1", "--json"))
    assert doc["links"] == []


def test_pull_json_has_spec_keys(mr, populated, isolated_env):
    doc = one_json(mr("pull", "ckpt:v0", "-o", "out", "--json"))
    assert doc["ref"] == "ckpt:v0" and doc["files"] == 5 and doc["mode"] in ("copy", "reflink")
    assert doc["bytes"] == sum(f["size"] for f in one_json(mr("ls", "ckpt:v0", "--json")))
    assert (isolated_env / doc["path"]).resolve() == (isolated_env / "out").resolve()


def test_ls_of_an_empty_registry_is_an_empty_json_list(mr):
    ok(mr("init"))
    assert one_json(mr("ls", "--json")) == []


# -- --plain -----------------------------------------------------------------------------


def rows(result):
    text = ok(result)
    assert "\x1b" not in text
    return [line.split("\t") for line in text.splitlines()]


def test_plain_ls_forms_are_tab_separated_without_header(mr, populated):
    # Column order is the man page's business; here: one full row per item, no header line.
    collections = rows(mr("ls", "--plain"))
    assert len(collections) == 2 and len({len(r) for r in collections}) == 1 and len(collections[0]) >= 6
    assert any("resnet" in r[0] for r in collections) and any(r[0] == "ckpt" for r in collections)
    assert all("artifact" in r for r in collections)
    assert not any(cell == "name" for r in collections for cell in r)

    versions = rows(mr("ls", "ckpt", "--plain"))
    assert [r[0] for r in versions] == ["ckpt:v0", "ckpt:v1"]
    digests = [d["digest"] for d in one_json(mr("ls", "ckpt", "--json"))]
    assert [digest in r for r, digest in zip(versions, digests)] == [True, True]  # full, not truncated

    files = rows(mr("ls", "ckpt:v0", "--plain"))
    assert [r[0] for r in files] == ["bin/run.sh", "config.json", "empty", "model.bin", "sub/deeper/notes.txt"]
    assert files[2][1] == "0"


def test_plain_log_show_and_pull_are_tab_separated(mr, tree):
    logged = rows(mr("log", tree, "--plain"))
    assert len(logged) == 1 and logged[0][0] == "ckpt:v0" and len(logged[0]) > 1
    shown = rows(mr("show", "ckpt", "--plain"))
    assert ["ref", "ckpt:v0"] in shown and all(len(r) >= 2 for r in shown)
    pulled = rows(mr("pull", "ckpt", "-o", "out", "--plain"))
    assert len(pulled) == 1 and "out" in pulled[0] and "ckpt:v0" in pulled[0]


def test_human_tables_have_headers_and_no_colour_off_a_terminal(mr, populated):
    text = ok(mr("ls"))
    assert "\x1b" not in text
    header = text.splitlines()[0].split()
    assert header[:3] == ["name", "kind", "versions"]
    assert "vision/resnet" in text


# -- -q ----------------------------------------------------------------------------------


def test_quiet_prints_only_ids_and_nothing_on_stderr(mr, tree, isolated_env):
    # The first log would note the new registry; quiet silences notes.
    first = mr("log", tree, "-q")
    assert (ok(first), first.stderr) == ("ckpt:v0\n", "")
    again = mr("log", tree, "-q")  # would note "unchanged"
    assert (ok(again), again.stderr) == ("ckpt:v0\n", "")
    expected = {
        ("init",): f"{isolated_env / '.modelreg'}\n",
        ("ls",): "ckpt\n",
        ("ls", "ckpt"): "ckpt:v0\n",
        ("ls", "ckpt:v0"): "bin/run.sh\nconfig.json\nempty\nmodel.bin\nsub/deeper/notes.txt\n",
        ("show", "ckpt"): "ckpt:v0\n",
        ("pull", "ckpt", "-o", "out"): "out\n",
        ("pull", "ckpt", "--mode", "hardlink", "-o", "linked"): "linked\n",  # would note the copied executable
    }
    for args, stdout in expected.items():
        result = mr(*args, "-q")
        assert (ok(result), result.stderr) == (stdout, ""), args


def test_quiet_still_prints_errors(mr, tree):
    ok(mr("log", tree))
    assert_error(mr("show", "ckpt:v7", "-q"), 3)


# -- conflicting modes -------------------------------------------------------------------

COMMANDS = {
    "init": ["init"],
    "log": ["log", "{tree}"],
    "ls": ["ls"],
    "ls-name": ["ls", "ckpt"],
    "ls-ref": ["ls", "ckpt:v0"],
    "show": ["show", "ckpt"],
    "pull": ["pull", "ckpt", "-o", "out"],
    "link": ["link", "ckpt:v0", "registered"],
    "alias": ["alias", "ckpt:v0", "best"],
    "diff": ["diff", "ckpt:v0", "ckpt:v0"],
    "history": ["history", "ckpt"],
    "rm": ["rm", "ckpt:v0"],
    "config-get": ["config", "get", "pull.mode"],
}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_json_and_plain_together_are_a_usage_error_and_change_nothing(mr, tree, isolated_env, command):
    ok(mr("log", tree))
    args = [a.format(tree=tree) for a in command]
    before = sorted(p.relative_to(isolated_env) for p in isolated_env.rglob("*") if "index.json" not in p.name)
    assert_error(mr(*args, "--json", "--plain"), 2)
    after = sorted(p.relative_to(isolated_env) for p in isolated_env.rglob("*") if "index.json" not in p.name)
    assert after == before


@pytest.mark.parametrize("modes", [("--json", "-q"), ("--plain", "--quiet")])
def test_quiet_with_another_mode_is_a_usage_error(mr, tree, modes):
    assert_error(mr("log", tree, *modes), 2)
    ok(mr("log", tree))
    assert_error(mr("ls", *modes), 2)


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_json_is_exactly_one_document_on_every_command(mr, tree, command):
    ok(mr("log", tree))
    args = [a.format(tree=tree) for a in command]
    doc = one_json(mr(*args, "--json"))
    assert isinstance(doc, (dict, list))
    assert json.loads(json.dumps(doc)) == doc
