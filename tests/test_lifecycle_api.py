"""Issue 3: the same lifecycle through the Python API (`modelreg.Registry`), no CLI involved."""

from __future__ import annotations

import getpass

import pytest

import modelreg
from foundation_util import is_rfc3339_utc
from lifecycle_util import registry_state, write_ckpt


@pytest.fixture
def reg(isolated_env):
    return modelreg.Registry.init(isolated_env)


@pytest.fixture
def runs(reg, isolated_env):
    """run-abc-model v0..v4 with val_acc; v3 is the best."""
    for n, acc in enumerate([0.71, 0.78, 0.80, 0.91, 0.85]):
        reg.log(write_ckpt(isolated_env / f"c{n}", f"epoch {n}\n"), name="run-abc-model",
                metadata={"val_acc": acc, "epoch": n}, run="abc")
    return reg


def test_api_lifecycle(runs, isolated_env):
    reg = runs
    first = reg.link("run-abc-model:v1", "classifier", aliases=["production"], description="first")
    assert (first.ref, first.version, first.new, first.source) == ("classifier:v0", 0, True, "run-abc-model:v1")
    best = reg.versions("run-abc-model", sort="-metadata.val_acc")[0]
    assert best.ref == "run-abc-model:v3"
    staged = reg.link(best.ref, "classifier", aliases=["staging"])
    assert (staged.ref, staged.new) == ("classifier:v1", True)
    again = reg.link(best.ref, "classifier")
    assert (again.ref, again.new, again.source) == ("classifier:v1", False, "run-abc-model:v3")

    before = registry_state(isolated_env)
    with pytest.raises(modelreg.Conflict) as stale:
        reg.alias("classifier:v1", "production", expect="v1", force=True)
    assert stale.value.exit_code == 4
    with pytest.raises(modelreg.Conflict):
        reg.alias("classifier:v1", "production", expect="v0")
    with pytest.raises(modelreg.Conflict):
        reg.rm("run-abc-model:v1")
    assert registry_state(isolated_env) == before

    moved = reg.alias("classifier:v1", "production", expect="v0", force=True, reason="beats v0 on eval")
    assert moved.ref == "classifier:v1" and set(moved.aliases) == {"latest", "production", "staging"}
    shown = reg.show("classifier:production")
    assert (shown.ref, shown.version, shown.kind, shown.source, shown.dangling) == \
        ("classifier:v1", 1, "registered", "run-abc-model:v3", False)
    assert shown.metadata == {"val_acc": 0.91, "epoch": 3}
    with pytest.raises(Exception):
        shown.version = 2  # a frozen record
    pulled = reg.pull("classifier:production", isolated_env / "out", mode="copy")
    assert (isolated_env / "out" / "model.bin").read_text() == "epoch 3\n"
    assert pulled.ref == "classifier:v1"
    assert reg.show("run-abc-model:v3").links == ("classifier:v1",)

    events = reg.history("classifier")
    assert [(e["event"], e.get("alias"), e.get("from"), e.get("to")) for e in events] == [
        ("linked", None, None, None), ("alias-set", "production", None, 0), ("linked", None, None, None),
        ("alias-set", "staging", None, 1), ("alias-moved", "production", 0, 1)]
    assert events[-1]["reason"] == "beats v0 on eval"
    assert all(e["user"] == getpass.getuser() and is_rfc3339_utc(e["time"]) for e in events)
    assert [e["event"] for e in reg.history("classifier:staging")] == ["alias-set"]

    other = reg.log(write_ckpt(isolated_env / "def", "def\n"), name="run-def-model")
    assert reg.link(other.ref, "classifier").ref == "classifier:v2"
    assert reg.show("classifier").ref == "classifier:v2"


def test_api_single_alias_and_input_may_be_a_string(runs, isolated_env):
    reg = runs
    assert set(reg.link("run-abc-model:v0", "classifier", aliases="staging").aliases) == {"latest", "staging"}
    logged = reg.log(write_ckpt(isolated_env / "x", "x\n"), name="ft", aliases="best", inputs="run-abc-model:v2")
    assert set(logged.aliases) == {"best", "latest"}
    assert [i["ref"] for i in reg.show("ft").inputs] == ["run-abc-model:v2"]
    assert reg.unalias("classifier", "staging") == {"staging": "classifier:v0"}
    assert set(reg.collections()[0].aliases) <= {"staging"}


def test_api_alias_delete_rm_dangling_and_diff(runs, isolated_env):
    reg = runs
    reg.alias("run-abc-model:v2", ["best", "candidate"])
    with pytest.raises(modelreg.NotFound):
        reg.unalias("run-abc-model", ["best", "nope"])
    with pytest.raises(modelreg.Conflict):
        reg.unalias("run-abc-model:v1", ["best"])
    with pytest.raises(modelreg.InvalidInput):
        reg.alias("run-abc-model:v1", "latest")
    assert reg.unalias("run-abc-model:v2", ["best"]) == {"best": "run-abc-model:v2"}

    reg.link("run-abc-model:v2", "classifier")
    deleted = reg.rm("run-abc-model:v2", force=True, reason="bad")
    assert [(d.ref, d.version, d.aliases) for d in deleted] == [("run-abc-model:v2", 2, ("candidate",))]
    shown = reg.show("classifier:v0")
    assert shown.dangling and shown.source == "run-abc-model:v2"
    for call in (lambda: reg.pull("classifier:v0", isolated_env / "o"), lambda: reg.diff("classifier:v0", "run-abc-model:v1"),
                 lambda: reg.files("classifier:v0"), lambda: reg.resolve("classifier:v0")):
        with pytest.raises(modelreg.NotFound):
            call()
    assert not (isolated_env / "o").exists()
    events = reg.history("run-abc-model")[-2:]
    assert [(e["event"], e.get("alias"), e.get("reason")) for e in events] == \
        [("alias-removed", "candidate", "bad"), ("deleted", None, "bad")]

    d = reg.diff("run-abc-model:v0", "run-abc-model:v4")
    assert d.changed == ("model.bin",) and not d.added and not d.removed
    assert d.metadata == {"val_acc": (0.71, 0.85), "epoch": (0, 4)}
    assert reg.diff("run-abc-model:v1", "run-abc-model:v1").same

    assert [v.version for v in reg.versions("run-abc-model", where=["metadata.epoch=4"])] == [4]
    assert [v.version for v in reg.versions("run-abc-model", sort="-version")] == [4, 3, 1, 0]
    reg.rm("run-abc-model", all=True, force=True)
    assert reg.log(write_ckpt(isolated_env / "c0", "epoch 0\n"), name="run-abc-model").version == 5


def test_api_name_clash_and_cross_project(runs, isolated_env):
    reg = runs
    reg.link("run-abc-model:v0", "classifier")
    with pytest.raises(modelreg.Conflict):
        reg.log(isolated_env / "c0", name="classifier")
    with pytest.raises(modelreg.Conflict):
        reg.link("run-abc-model:v0", "run-abc-model")
    res = reg.link("run-abc-model:v0", "prod/classifier")
    assert (res.ref, res.project, res.source) == ("prod/classifier:v0", "prod", "run-abc-model:v0")

