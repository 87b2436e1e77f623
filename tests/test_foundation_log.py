"""`modelreg log` (SPEC §3): what is stored, under which name, with which metadata and producer."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import make_tree
from foundation_util import assert_error, is_rfc3339_utc, manifest_path, ok, one_json


def paths_of(mr, ref):
    return [f["path"] for f in one_json(mr("ls", ref, "--json"))]


def manifest(isolated_env, name, version=0, **where):
    return json.loads(manifest_path(isolated_env / ".modelreg", name, version, **where).read_text())


@pytest.fixture(params=["fresh-dir", "existing-registry"])
def registry_state(request, mr):
    """Refusals are checked both where `log` would create the registry and where one exists."""
    if request.param == "existing-registry":
        ok(mr("init"))
    return request.param


def assert_nothing_logged(isolated_env, registry_state) -> None:
    registry = isolated_env / ".modelreg"
    if registry_state == "fresh-dir":
        assert not registry.exists(), "a refused first log must not leave a registry behind"
        return
    assert not list(registry.glob("collections/*/*/*/versions/*.json"))
    assert not [p for p in (registry / "objects").rglob("*") if p.is_file()]
    assert os.listdir(registry / "tmp") == []


# -- names and layout --------------------------------------------------------------------


def test_a_single_directory_becomes_the_root_and_names_the_artifact(mr, tree):
    assert ok(mr("log", f"{tree}/")) == "ckpt:v0\n"
    assert paths_of(mr, "ckpt:v0") == ["bin/run.sh", "config.json", "empty", "model.bin", "sub/deeper/notes.txt"]


def test_a_single_file_is_stored_under_its_basename_and_names_the_artifact(mr, tmp_path):
    src = make_tree(tmp_path / "deep" / "dir", {"model.pt": b"weights"})
    assert ok(mr("log", src / "model.pt")) == "model.pt:v0\n"
    assert paths_of(mr, "model.pt:v0") == ["model.pt"]


def test_logging_dot_uses_the_directory_name(mr, tmp_path):
    src = make_tree(tmp_path / "run42", {"w": "x"})
    assert ok(mr("log", ".", cwd=src)) == "run42:v0\n"


def test_several_paths_need_a_name(mr, tmp_path, isolated_env):
    src = make_tree(tmp_path / "src", {"a.bin": "a", "b.bin": "b"})
    result = mr("log", src / "a.bin", src / "b.bin")
    assert_error(result, 2, "name")
    assert not (isolated_env / ".modelreg").exists()


def test_several_paths_are_each_stored_under_their_basename(mr, tmp_path):
    src = make_tree(tmp_path / "src", {"model.pt": "m", "tok/vocab.txt": "v", "tok/merges.txt": "g"})
    assert ok(mr("log", src / "model.pt", src / "tok", "-n", "bert")) == "bert:v0\n"
    assert paths_of(mr, "bert:v0") == ["model.pt", "tok/merges.txt", "tok/vocab.txt"]


def test_several_paths_with_equal_basenames_are_refused(mr, tmp_path, isolated_env, registry_state):
    src = make_tree(tmp_path / "src", {"a/w.bin": "1", "b/w.bin": "2"})
    result = mr("log", src / "a" / "w.bin", src / "b" / "w.bin", "-n", "both")
    assert_error(result, 2, "w.bin")
    assert_nothing_logged(isolated_env, registry_state)


def test_exclude_patterns_match_paths_and_their_parts(mr, tmp_path):
    src = make_tree(tmp_path / "m", {
        "model.bin": "w", "scratch.tmp": "t", "sub/part.tmp": "t", "__pycache__/x.pyc": "c",
        "pkg/__pycache__/y.pyc": "c", "pkg/code.py": "p", "logs/run.log": "l", "logs/deep/more.log": "l",
        "notes/logs.txt": "n",
    })
    ok(mr("log", src, "--exclude", "*.tmp", "--exclude", "__pycache__", "--exclude", "logs/*"))
    assert paths_of(mr, "m:v0") == ["model.bin", "notes/logs.txt", "pkg/code.py"]


def test_exclude_patterns_apply_to_each_of_several_paths_too(mr, tmp_path):
    src = make_tree(tmp_path / "src", {"a.tmp": "t", "b.bin": "b", "logs/x.log": "l", "__pycache__/m.pyc": "c"})
    ok(mr("log", src / "a.tmp", src / "b.bin", src / "logs", src / "__pycache__", "-n", "several",
          "--exclude", "*.tmp", "--exclude", "__pycache__", "--exclude", "logs/*"))
    assert paths_of(mr, "several:v0") == ["b.bin"]


def test_excluding_the_only_file_leaves_nothing_to_log(mr, tmp_path, isolated_env, registry_state):
    src = make_tree(tmp_path / "src", {"a.tmp": "t"})
    assert_error(mr("log", src / "a.tmp", "--exclude", "*.tmp"), 2)
    assert_nothing_logged(isolated_env, registry_state)


def test_a_registry_inside_the_logged_directory_is_skipped_with_a_note(mr, tmp_path, isolated_env):
    ok(mr("init"))
    project = make_tree(tmp_path / "proj", {"w.bin": "w", "sub/x.bin": "x"})
    ok(mr("init", project))
    ok(mr("init", project / "sub"))
    result = mr("log", project, "-n", "proj")
    assert ok(result) == "proj:v0\n"
    assert str(project / ".modelreg") in result.stderr
    assert str(project / "sub" / ".modelreg") in result.stderr
    assert paths_of(mr, "proj:v0") == ["sub/x.bin", "w.bin"]


@pytest.mark.parametrize("how", [".modelreg", ".modelreg/", "{work}/.modelreg", "."])
def test_logging_the_registry_directory_itself_stores_nothing_of_it(mr, tree, isolated_env, how):
    ok(mr("log", tree))
    cwd = isolated_env / ".modelreg" if how == "." else isolated_env
    result = mr("log", how.format(work=isolated_env), "-n", "copy", cwd=cwd)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and "modelreg: error: " in result.stderr
    assert ".modelreg" in result.stderr  # the skip note names it
    assert [c["name"] for c in one_json(mr("ls", "--json"))] == ["ckpt"]


def test_symlinks_are_followed(mr, tmp_path):
    elsewhere = make_tree(tmp_path / "elsewhere", {"real.bin": b"real bytes", "dir/inner.txt": "inner"})
    src = make_tree(tmp_path / "m", {"plain.txt": "p"})
    (src / "link.bin").symlink_to(elsewhere / "real.bin")
    (src / "linkdir").symlink_to(elsewhere / "dir")
    ok(mr("log", src))
    files = {f["path"]: f for f in one_json(mr("ls", "m:v0", "--json"))}
    assert sorted(files) == ["link.bin", "linkdir/inner.txt", "plain.txt"]
    assert files["link.bin"]["size"] == len(b"real bytes")


def test_a_symlink_loop_is_refused(mr, tmp_path, isolated_env, registry_state):
    src = make_tree(tmp_path / "m", {"sub/good.bin": "g"})
    (src / "sub" / "again").symlink_to(src, target_is_directory=True)
    assert_error(mr("log", src), 2, "again")
    assert_nothing_logged(isolated_env, registry_state)


def test_a_dangling_symlink_is_refused_by_name_and_nothing_is_logged(mr, tmp_path, isolated_env, registry_state):
    src = make_tree(tmp_path / "m", {"good.bin": "g"})
    (src / "broken").symlink_to(tmp_path / "nowhere")
    assert_error(mr("log", src), 2, "broken")
    assert_nothing_logged(isolated_env, registry_state)


def test_a_fifo_is_refused_by_name_and_nothing_is_logged(mr, tmp_path, isolated_env, registry_state):
    src = make_tree(tmp_path / "m", {"good.bin": "g"})
    os.mkfifo(src / "pipe")
    assert_error(mr("log", src), 2, "pipe")
    assert_nothing_logged(isolated_env, registry_state)


@pytest.mark.parametrize("bad_name", ["back\\slash", "new\nline", "tab\there"])
def test_unsafe_file_names_are_refused_as_input(mr, tmp_path, isolated_env, registry_state, bad_name):
    src = make_tree(tmp_path / "m", {"good.bin": "g", bad_name: "x"})
    assert_error(mr("log", src), 2)
    assert_nothing_logged(isolated_env, registry_state)


def test_paths_differing_only_by_case_are_refused(mr, tmp_path, isolated_env, registry_state):
    src = make_tree(tmp_path / "m", {"Model.bin": "1", "model.bin": "2"})
    assert_error(mr("log", src), 2)
    assert_nothing_logged(isolated_env, registry_state)


def test_a_missing_path_is_not_found(mr, isolated_env, registry_state):
    assert_error(mr("log", isolated_env / "nope"), 3, "nope")  # SPEC §4: not found is exit 3
    assert_nothing_logged(isolated_env, registry_state)


@pytest.mark.parametrize("option", [["-n", "bad name"], ["-n", "a/b/c/d"], ["-n", "m:v1"], ["-a", "v1"],
                                    ["-a", "latest"], ["-a", "-bad"], ["-a", "b\u0435st"], ["-a", "x.lock"],
                                    ["-a", "none"]])
def test_a_bad_name_or_alias_is_refused_before_anything_is_written(mr, tree, isolated_env, registry_state, option):
    assert_error(mr("log", tree, *option), 2)
    assert_nothing_logged(isolated_env, registry_state)


def test_an_input_ref_in_a_directory_without_registry_is_not_found(mr, tree, isolated_env):
    assert_error(mr("log", tree, "--input", "dataset:v0"), 3)
    assert not (isolated_env / ".modelreg").exists()


# -- metadata ----------------------------------------------------------------------------


def test_metadata_values_are_json_when_they_parse_else_strings(mr, tree, isolated_env):
    ok(mr("log", tree, "-m", "epoch=3", "-m", 'tags=["a","b"]', "-m", 'v="1.10"', "-m", "opt=adam",
          "-m", "acc=0.91", "-m", "flag=true", "-m", "eq=a=b", "-m", "none=null"))
    assert manifest(isolated_env, "ckpt")["metadata"] == {
        "epoch": 3, "tags": ["a", "b"], "v": "1.10", "opt": "adam", "acc": 0.91, "flag": True, "eq": "a=b",
        "none": None,
    }
    shown = one_json(mr("show", "ckpt", "--json"))["metadata"]
    assert shown["epoch"] == 3 and shown["v"] == "1.10"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "[1, NaN]"])
def test_non_finite_metadata_is_refused(mr, tree, isolated_env, value):
    assert_error(mr("log", tree, "-m", f"x={value}"), 2)
    assert not (isolated_env / ".modelreg").exists()


def test_metadata_without_equals_sign_is_refused(mr, tree):
    assert_error(mr("log", tree, "-m", "epoch"), 2)


def test_meta_file_is_merged_first_and_m_wins(mr, tree, tmp_path, isolated_env):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"epoch": 1, "dataset": "imagenet", "nested": {"k": [1, 2]}}))
    ok(mr("log", tree, "--meta-file", meta, "-m", "epoch=3"))
    assert manifest(isolated_env, "ckpt")["metadata"] == {"epoch": 3, "dataset": "imagenet", "nested": {"k": [1, 2]}}


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "3", "{not json", '{"x": NaN}'])
def test_a_meta_file_that_is_not_a_json_object_is_refused(mr, tree, tmp_path, content):
    meta = tmp_path / "meta.json"
    meta.write_text(content)
    assert_error(mr("log", tree, "--meta-file", meta), 2)


def test_a_missing_meta_file_is_refused(mr, tree, tmp_path):
    assert_error(mr("log", tree, "--meta-file", tmp_path / "absent.json"), 3, "absent.json")


def test_description_and_inputs_are_recorded(mr, tree, tmp_path):
    data = make_tree(tmp_path / "data", {"train.csv": "a,b\n"})
    base = one_json(mr("log", data, "-n", "dataset", "--json"))
    ok(mr("log", tree, "-d", "fine-tuned", "--input", "dataset:v0"))
    shown = one_json(mr("show", "ckpt:v0", "--json"))
    assert shown["description"] == "fine-tuned"
    assert shown["inputs"] == [{"ref": "dataset:v0", "digest": base["digest"]}]


def test_an_input_that_does_not_exist_is_not_found(mr, tree, isolated_env):
    ok(mr("init"))
    assert_error(mr("log", tree, "--input", "dataset:v9"), 3)
    assert_nothing_logged(isolated_env, registry_state)


# -- producer ----------------------------------------------------------------------------


def test_producer_records_user_host_cwd_command_time_and_run(mr, tree, isolated_env):
    ok(mr("log", tree, "--run", "run-2024-17"))
    producer = one_json(mr("show", "ckpt", "--json"))["producer"]
    assert producer["user"]
    assert producer["host"]
    assert producer["cwd"] == str(isolated_env)
    assert "log" in producer["command"] and str(tree) in producer["command"]
    assert is_rfc3339_utc(producer["time"])
    assert producer["run"] == "run-2024-17"
    assert "git" not in producer  # the working directory is not a git checkout


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main",
                    *args], cwd=cwd, check=True, capture_output=True)


def test_producer_records_the_git_commit_and_dirty_flag_of_the_working_directory(mr, tmp_path):
    checkout = make_tree(tmp_path / "checkout", {"train.py": "print('train')\n"})
    _git("init", "-q", cwd=checkout)
    _git("add", "train.py", cwd=checkout)
    _git("commit", "-q", "-m", "first", cwd=checkout)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout.strip()
    registry = tmp_path / "reg"
    ok(mr("init", registry))
    src = make_tree(tmp_path / "ckpt", {"w": "1"})

    ok(mr("--root", registry, "log", src, cwd=checkout))
    clean = one_json(mr("--root", registry, "show", "ckpt:v0", "--json"))["producer"]
    assert clean["git"] == {"commit": head, "dirty": False}

    (checkout / "train.py").write_text("print('changed')\n")
    (src / "w").write_text("2")
    ok(mr("--root", registry, "log", src, cwd=checkout))
    dirty = one_json(mr("--root", registry, "show", "ckpt:v1", "--json"))["producer"]
    assert dirty["git"] == {"commit": head, "dirty": True}


# -- identical content -------------------------------------------------------------------


def test_identical_content_returns_the_existing_version_with_new_false(mr, tree):
    first = one_json(mr("log", tree, "--json", "-m", "epoch=1", "-d", "first"))
    again = mr("log", tree, "--json", "-m", "epoch=2", "-d", "second")
    second = one_json(again)
    assert first["new"] is True and second["new"] is False
    assert second["ref"] == "ckpt:v0" and second["digest"] == first["digest"]
    assert "unchanged" in again.stderr
    shown = one_json(mr("show", "ckpt:v0", "--json"))
    assert shown["metadata"] == {"epoch": 1} and shown["description"] == "first"


def test_identical_content_applies_the_aliases_given(mr, tree):
    ok(mr("log", tree))
    second = one_json(mr("log", tree, "-a", "best", "--json"))
    assert second["new"] is False
    assert "best" in second["aliases"]
    assert one_json(mr("show", "ckpt:best", "--json"))["version"] == 0


def test_relogging_old_content_gives_it_the_alias_but_latest_does_not_move_back(mr, tmp_path):
    src = make_tree(tmp_path / "m", {"w": "A"})
    assert ok(mr("log", src)) == "m:v0\n"
    (src / "w").write_text("B")
    assert ok(mr("log", src)) == "m:v1\n"
    (src / "w").write_text("A")
    result = one_json(mr("log", src, "-a", "again", "--json"))
    assert (result["ref"], result["new"]) == ("m:v0", False)
    assert sorted(result["aliases"]) == ["again"]  # v0 is not latest
    assert one_json(mr("show", "m:latest", "--json"))["version"] == 1
    assert one_json(mr("show", "m:again", "--json"))["version"] == 0
    assert [v["version"] for v in one_json(mr("ls", "m", "--json"))] == [0, 1]


def test_identical_content_in_another_artifact_is_a_new_version_there(mr, tree):
    ok(mr("log", tree))
    other = one_json(mr("log", tree, "-n", "copy", "--json"))
    assert (other["ref"], other["new"]) == ("copy:v0", True)
