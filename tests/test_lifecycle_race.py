"""Issue 3: `alias --expect` is a compare-and-swap between real processes.

Several `modelreg alias` processes race to move one alias from the same expected
version; in every round exactly one wins, the others exit 4 having changed nothing, and
the history holds exactly the winners' moves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import modelreg
from lifecycle_util import write_ckpt

RACERS = 4
ROUNDS = 3


def _race(args_per_racer, cwd):
    procs = [subprocess.Popen([sys.executable, "-m", "modelreg", *args], cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in args_per_racer]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append((proc.returncode, out, err))
    return results


def test_parallel_alias_expect_has_one_winner_per_round(isolated_env):
    work = isolated_env
    reg = modelreg.Registry.init(work)
    for n in range(RACERS + 1):
        reg.log(write_ckpt(work / f"c{n}", f"weights {n}\n"), name="resnet")
        reg.link(f"resnet:v{n}", "classifier")
    reg.alias("classifier:v0", "production")
    current, winners = 0, []
    for round_ in range(ROUNDS):
        targets = [n for n in range(RACERS + 1) if n != current]
        results = _race([["alias", f"classifier:v{t}", "production", "--expect", f"v{current}", "--force",
                          "--reason", f"round {round_} racer {t}", "--json"] for t in targets], work)
        won = [(t, r) for t, r in zip(targets, results) if r[0] == 0]
        lost = [r for r in results if r[0] != 0]
        assert len(won) == 1, results
        assert all(code == 4 and out == "" and "expected" in err and "Traceback" not in err
                   for code, out, err in lost), lost
        target, (_, out, _) = won[0]
        assert json.loads(out)["ref"] == f"classifier:v{target}"
        assert reg.show("classifier:production").version == target
        winners.append((current, target))
        current = target

    events = reg.history("classifier")
    assert [e["event"] for e in events] == ["linked"] * (RACERS + 1) + ["alias-set"] + ["alias-moved"] * ROUNDS
    moves = [e for e in events if e["event"] == "alias-moved"]
    assert [(e["from"], e["to"]) for e in moves] == winners
    assert [e["reason"] for e in moves] == [f"round {i} racer {t}" for i, (_, t) in enumerate(winners)]
    # the last change record's alias map names the last winner
    changes = sorted((work / ".modelreg/collections/local/default/classifier/changes").glob("*.json"))
    assert json.loads(changes[-1].read_bytes())["aliases"]["production"] == current
    assert not list((work / ".modelreg" / "tmp").iterdir())


def test_parallel_first_set_with_expect_none(isolated_env):
    work = isolated_env
    reg = modelreg.Registry.init(work)
    for n in range(RACERS):
        reg.log(write_ckpt(work / f"c{n}", f"weights {n}\n"), name="resnet")
    results = _race([["alias", f"resnet:v{n}", "staging", "best", "--expect", "none"] for n in range(RACERS)], work)
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [4] * (RACERS - 1), results
    winner = next(n for n, (code, _, _) in enumerate(results) if code == 0)
    aliases = reg.collection(reg.parse("resnet").collection).aliases()
    assert aliases == {"best": winner, "staging": winner}  # both aliases of the winner, none of a loser
    events = reg.history("resnet")
    assert [(e["event"], e["alias"], e["to"]) for e in events if e["event"] != "logged"] == \
        [("alias-set", "staging", winner), ("alias-set", "best", winner)]


def test_parallel_links_of_one_version_make_one_link(isolated_env):
    work = isolated_env
    reg = modelreg.Registry.init(work)
    reg.log(write_ckpt(work / "c", "weights\n"), name="resnet")
    # the registered model does not exist yet: the racers also race to create it
    results = _race([["link", "resnet:v0", "classifier", "--json"] for _ in range(RACERS)], work)
    assert all(code == 0 for code, _, _ in results), results
    docs = [json.loads(out) for _, out, _ in results]
    assert {d["ref"] for d in docs} == {"classifier:v0"}
    assert sorted(d["new"] for d in docs) == [False] * (RACERS - 1) + [True]
    assert [v.ref for v in reg.versions("classifier")] == ["classifier:v0"]
    assert [e["event"] for e in reg.history("classifier")] == ["linked"]


def test_a_version_being_deleted_cannot_be_linked_meanwhile(isolated_env, monkeypatch):
    """A link made between rm's check for links and rm's commit: one of the two is refused
    (format 2 orders them in the artifact's record sequence: link commits a "linked into"
    mark there first), so no link dangles without --force.
    """
    work = isolated_env
    reg = modelreg.Registry.init(work)
    reg.log(write_ckpt(work / "c", "weights\n"), name="resnet")
    outcome = {}
    original = modelreg.Registry._backlinks

    def backlinks(self, cid, *args, **kwargs):
        found = original(self, cid, *args, **kwargs)
        if "thread" not in outcome:  # rm has just found no link: another writer links now

            def link():
                try:
                    outcome["link"] = modelreg.Registry.open(work).link("resnet:v0", "classifier")
                except modelreg.Error as exc:
                    outcome["error"] = exc

            outcome["thread"] = threading.Thread(target=link)
            outcome["thread"].start()
            outcome["thread"].join(0.5)
        return found

    monkeypatch.setattr(modelreg.Registry, "_backlinks", backlinks)
    try:
        deleted = [d.ref for d in reg.rm("resnet:v0")]
    except modelreg.Conflict:
        deleted = None
    outcome["thread"].join(15)
    assert "thread" in outcome, "rm never looked for links"
    if deleted is None:  # the link won: rm re-checked and refused
        assert outcome.get("link") is not None and outcome["link"].ref == "classifier:v0", outcome
        assert reg.show("classifier:v0").dangling is False
        assert [v.ref for v in reg.versions("resnet")] == ["resnet:v0"]
    else:  # rm won: the link found its source deleted
        assert deleted == ["resnet:v0"]
        assert isinstance(outcome.get("error"), modelreg.NotFound), outcome
        assert "classifier" not in [c.name for c in reg.collections()]
