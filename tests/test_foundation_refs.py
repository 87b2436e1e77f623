"""Refs and registries (SPEC §2, §3): grammar, defaults, shortest output, selectors, --root."""

from __future__ import annotations

import pytest

from conftest import make_tree
from foundation_util import assert_error, ok, one_json


def collection_dir(isolated_env, entity, project, name):
    return isolated_env / ".modelreg" / "collections" / entity / project / name


# -- defaults and the shortest form ------------------------------------------------------


def test_without_settings_collections_live_in_local_default(mr, tree, isolated_env):
    result = one_json(mr("log", tree, "--json"))
    assert (result["ref"], result["collection"], result["entity"], result["project"]) == \
        ("ckpt:v0", "ckpt", "local", "default")
    assert collection_dir(isolated_env, "local", "default", "ckpt").is_dir()


def test_entity_and_project_come_from_the_environment(mr, tree, isolated_env, monkeypatch):
    monkeypatch.setenv("MODELREG_ENTITY", "acme")
    monkeypatch.setenv("MODELREG_PROJECT", "vision")
    result = one_json(mr("log", tree, "--json"))
    assert (result["ref"], result["entity"], result["project"]) == ("ckpt:v0", "acme", "vision")
    assert collection_dir(isolated_env, "acme", "vision", "ckpt").is_dir()

    monkeypatch.delenv("MODELREG_ENTITY")
    monkeypatch.delenv("MODELREG_PROJECT")
    assert ok(mr("ls", "-q")) == "acme/vision/ckpt\n"
    assert one_json(mr("show", "acme/vision/ckpt:v0", "--json"))["ref"] == "acme/vision/ckpt:v0"
    assert_error(mr("show", "ckpt:v0"), 3)


def test_entity_and_project_come_from_the_config_and_the_environment_wins(mr, tree, isolated_env, monkeypatch):
    ok(mr("init"))
    ok(mr("config", "set", "defaults.entity", "team"))
    ok(mr("config", "set", "defaults.project", "nlp"))
    assert ok(mr("log", tree)) == "ckpt:v0\n"
    assert collection_dir(isolated_env, "team", "nlp", "ckpt").is_dir()

    monkeypatch.setenv("MODELREG_PROJECT", "speech")
    assert ok(mr("log", tree)) == "ckpt:v0\n"
    assert collection_dir(isolated_env, "team", "speech", "ckpt").is_dir()
    assert one_json(mr("show", "nlp/ckpt", "--json"))["ref"] == "nlp/ckpt:v0"


def test_project_slash_name_and_entity_project_name_are_shown_in_their_shortest_form(mr, tree, monkeypatch):
    assert ok(mr("log", tree, "-n", "vision/resnet")) == "vision/resnet:v0\n"
    assert ok(mr("log", tree, "-n", "acme/vision/resnet")) == "acme/vision/resnet:v0\n"
    assert ok(mr("log", tree, "-n", "local/default/resnet")) == "resnet:v0\n"
    listed = {(c["entity"], c["project"], c["name"]) for c in one_json(mr("ls", "--json"))}
    assert listed == {("local", "vision", "resnet"), ("acme", "vision", "resnet"), ("local", "default", "resnet")}

    monkeypatch.setenv("MODELREG_ENTITY", "acme")
    assert one_json(mr("show", "acme/vision/resnet:v0", "--json"))["ref"] == "vision/resnet:v0"
    monkeypatch.setenv("MODELREG_PROJECT", "vision")
    assert one_json(mr("show", "acme/vision/resnet", "--json"))["ref"] == "resnet:v0"
    assert ok(mr("ls", "resnet", "-q")) == "resnet:v0\n"


def test_log_name_with_a_selector_is_refused(mr, tree):
    assert_error(mr("log", tree, "-n", "resnet:v0"), 2)
    assert_error(mr("log", tree, "-n", "acme/vision/resnet:best"), 2)


# -- selectors ---------------------------------------------------------------------------


@pytest.fixture
def three_versions(mr, tmp_path):
    src = make_tree(tmp_path / "m", {"w": "0"})
    digests = []
    for content in ("0", "1", "2"):
        (src / "w").write_text(content)
        digests.append(one_json(mr("log", src, "-n", "model", "--json"))["digest"])
    ok(mr("alias", "model:v1", "best"))
    return digests


@pytest.mark.parametrize("selector, version", [("", 2), (":latest", 2), (":v0", 0), (":v1", 1), (":best", 1)])
def test_selectors_name_versions(mr, three_versions, selector, version):
    assert one_json(mr("show", f"model{selector}", "--json"))["version"] == version


def test_a_digest_prefix_selects_a_version(mr, three_versions):
    for number, digest in enumerate(three_versions):
        for prefix in (digest[:8], digest[:20], digest):
            shown = one_json(mr("show", f"model:{prefix}", "--json"))
            assert (shown["version"], shown["digest"]) == (number, digest)


def test_a_digest_prefix_matching_nothing_is_not_found(mr, three_versions):
    prefix = next(p for p in ("00000000", "ffffffff") if not any(d.startswith(p) for d in three_versions))
    assert_error(mr("show", f"model:{prefix}"), 3)


def test_a_digest_prefix_shorter_than_8_is_not_a_digest(mr, three_versions):
    assert_error(mr("show", f"model:{three_versions[0][:7]}"), 3)


def test_an_ambiguous_digest_prefix_is_an_error_naming_the_candidates(mr, tmp_path):
    # Found by a birthday search: these two one-file versions have digests starting dee5e7d4.
    src = make_tree(tmp_path / "m", {"w": "146"})
    first = one_json(mr("log", src, "--json"))
    (src / "w").write_text("113994")
    second = one_json(mr("log", src, "--json"))
    assert first["digest"][:8] == second["digest"][:8] == "dee5e7d4"
    assert first["digest"][:9] != second["digest"][:9]

    result = mr("show", "m:dee5e7d4")
    assert_error(result, 2, "ambiguous")
    assert "v0" in result.stderr and "v1" in result.stderr
    assert one_json(mr("show", f"m:{second['digest'][:9]}", "--json"))["version"] == 1


def test_an_alias_wins_over_a_digest_prefix_of_the_same_spelling(mr, three_versions):
    prefix = three_versions[2][:8]  # v2's digest prefix, set as an alias of v0
    ok(mr("alias", "model:v0", prefix))
    assert one_json(mr("show", f"model:{prefix}", "--json"))["version"] == 0
    assert one_json(mr("show", f"model:{three_versions[2][:10]}", "--json"))["version"] == 2


@pytest.mark.parametrize("ref", ["model:v9", "model:nosuch", "other", "other:v0", "vision/model:v0"])
def test_refs_to_missing_things_are_not_found(mr, three_versions, ref):
    assert_error(mr("show", ref), 3)
    assert_error(mr("pull", ref), 3)


# -- invalid names -----------------------------------------------------------------------

INVALID_REFS = {
    "cyrillic-e": "resn\u0435t",
    "fullwidth": "\uff52esnet",
    "greek-omicron": "m\u03bfdel",
    "newline": "res\nnet",
    "tab": "res\tnet",
    "nul-free-space": "res net",
    "leading-dot": ".hidden",
    "leading-dash": "-rf",
    "empty-part": "vision//resnet",
    "four-parts": "a/b/c/resnet",
    "empty-selector": "resnet:",
    "bad-selector": "resnet:v1:v2",
    "10k": "r" * 10_000,
    "129-chars": "r" * 129,
}


@pytest.mark.parametrize("ref", INVALID_REFS.values(), ids=INVALID_REFS.keys())
def test_invalid_refs_are_usage_errors_on_one_short_line(mr, tree, ref):
    ok(mr("log", tree))
    for args in (["show", ref], ["ls", ref], ["pull", ref], ["log", str(tree), "-n", ref]):
        result = mr(*args)
        assert_error(result, 2)
        assert len(result.stderr) < 400, result.stderr


def test_a_128_character_name_is_fine(mr, tree):
    name = "r" * 128
    assert ok(mr("log", tree, "-n", name)) == f"{name}:v0\n"


@pytest.mark.parametrize("name", ["resnet-50", "ResNet_v2.1", "0day", "a"])
def test_names_of_the_allowed_characters_are_accepted(mr, tree, name):
    assert ok(mr("log", tree, "-n", name)) == f"{name}:v0\n"


# -- which registry ----------------------------------------------------------------------


@pytest.mark.parametrize("command", [["ls"], ["ls", "ckpt"], ["show", "ckpt"], ["pull", "ckpt"], ["ls", "ckpt:v0"]])
def test_without_a_registry_reading_commands_are_not_found(mr, isolated_env, command):
    assert_error(mr(*command), 3)
    assert not (isolated_env / ".modelreg").exists()
    assert not (isolated_env / "ckpt-v0").exists()


def test_log_creates_a_registry_in_the_current_directory_with_a_note(mr, tree, isolated_env):
    result = mr("log", tree)
    assert ok(result) == "ckpt:v0\n"
    assert "created a new registry" in result.stderr
    assert str(isolated_env / ".modelreg") in result.stderr
    assert (isolated_env / ".modelreg" / "config.toml").is_file()
    assert "created" not in mr("log", tree).stderr


def test_the_nearest_registry_upward_is_used(mr, tree, isolated_env):
    ok(mr("log", tree))
    deep = isolated_env / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert ok(mr("ls", "-q", cwd=deep)) == "ckpt\n"
    assert ok(mr("log", tree, "-n", "second", cwd=deep)) == "second:v0\n"
    assert not (deep / ".modelreg").exists()


@pytest.mark.parametrize("form", ["registry-dir", "parent-dir"])
def test_root_names_the_registry_or_the_directory_holding_it(mr, tree, tmp_path, isolated_env, form):
    shared = tmp_path / "shared"
    ok(mr("init", shared))
    root = shared / ".modelreg" if form == "registry-dir" else shared
    assert ok(mr("--root", root, "log", tree)) == "ckpt:v0\n"
    assert not (isolated_env / ".modelreg").exists()
    assert ok(mr("--root", root, "ls", "-q")) == "ckpt\n"
    assert_error(mr("ls"), 3)


def test_modelreg_dir_picks_the_registry_and_root_wins_over_it(mr, tree, tmp_path, monkeypatch):
    one, two = tmp_path / "one", tmp_path / "two"
    ok(mr("init", one))
    ok(mr("init", two))
    monkeypatch.setenv("MODELREG_DIR", str(one))
    ok(mr("log", tree, "-n", "in-one"))
    ok(mr("--root", two, "log", tree, "-n", "in-two"))
    assert ok(mr("ls", "-q")) == "in-one\n"
    assert ok(mr("--root", two, "ls", "-q")) == "in-two\n"
    monkeypatch.setenv("MODELREG_DIR", str(one / ".modelreg"))
    assert ok(mr("ls", "-q")) == "in-one\n"


def test_root_or_modelreg_dir_without_a_registry_is_not_found(mr, tmp_path, monkeypatch):
    assert_error(mr("--root", tmp_path / "nothing", "ls"), 3)
    monkeypatch.setenv("MODELREG_DIR", str(tmp_path / "nothing"))
    assert_error(mr("ls"), 3)


# -- init --------------------------------------------------------------------------------


def test_init_prints_the_registry_path_and_is_idempotent(mr, tree, isolated_env):
    first = mr("init")
    assert ok(first) == f"{isolated_env / '.modelreg'}\n"
    ok(mr("log", tree))
    config = isolated_env / ".modelreg" / "config.toml"
    before = (config.read_bytes(), config.stat().st_mtime_ns)
    second = mr("init")
    assert ok(second) == first.stdout
    assert (config.read_bytes(), config.stat().st_mtime_ns) == before
    assert ok(mr("ls", "ckpt", "-q")) == "ckpt:v0\n"


def test_init_dir_creates_the_registry_there(mr, tmp_path):
    target = tmp_path / "new" / "place"
    assert ok(mr("init", target)) == f"{target / '.modelreg'}\n"
    assert (target / ".modelreg" / "objects").is_dir()
    assert ok(mr("init", target, "-q")) == f"{target / '.modelreg'}\n"
    assert one_json(mr("init", target, "--json"))["path"] == str(target / ".modelreg")
