"""Property-based tests (hypothesis) of the two gates every hostile string passes: refs and paths."""

from __future__ import annotations

import ntpath
import posixpath
import unicodedata

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from modelreg.errors import InvalidInput
from modelreg.manifest import path_problem, paths_problem
from modelreg.refs import ALIAS_RE, NAME_RE, VERSION_RE, CollectionId, format_ref, parse_ref

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ASCII_NAME_CHARS = "abcXYZ019._-"
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True)
aliases = names.filter(lambda a: len(a) <= 64 and not VERSION_RE.fullmatch(a))
selectors = st.one_of(st.integers(0, 10**6).map(lambda n: f"v{n}"), aliases,
                      st.from_regex(r"[0-9a-f]{8,64}", fullmatch=True))
# Text that mixes the characters refs are built from with everything hostile input uses.
ref_alphabet = st.sampled_from(list(ASCII_NAME_CHARS + ":/\\ \n\t\x00.") +
                               ["\u0435", "\u00e9", "e\u0301", "\u200b", "\u202e", "\uff52", "\u0663", "\U0001f600"])
ref_text = st.one_of(st.lists(ref_alphabet, max_size=30).map("".join), st.text(max_size=40))


# -- refs -------------------------------------------------------------------------------


@SETTINGS
@given(ref_text)
def test_parse_ref_accepts_only_valid_parts_and_fails_only_with_invalid_input(text):
    try:
        ref = parse_ref(text)
    except InvalidInput as exc:
        assert "\n" not in str(exc)  # an error message is one line, whatever the input
        return
    cid = ref.collection
    for part in (cid.entity, cid.project, cid.name):
        assert NAME_RE.fullmatch(part) and part.isascii()
    if ref.selector is not None:
        assert ref.selector.isascii() and "\n" not in ref.selector


@SETTINGS
@given(names, names, names, st.one_of(st.none(), selectors))
def test_parse_ref_round_trips_every_form(entity, project, name, selector):
    suffix = "" if selector is None else f":{selector}"
    full = parse_ref(f"{entity}/{project}/{name}{suffix}", "dflt-e", "dflt-p")
    assert full.collection == CollectionId(entity, project, name) and full.selector == selector
    two = parse_ref(f"{project}/{name}{suffix}", entity, "dflt-p")
    assert two.collection == CollectionId(entity, project, name)
    one = parse_ref(f"{name}{suffix}", entity, project)
    assert one.collection == CollectionId(entity, project, name)


@SETTINGS
@given(names, names, names, names, names, st.integers(0, 10**6))
def test_the_shortest_ref_form_resolves_back(entity, project, name, default_entity, default_project, version):
    cid = CollectionId(entity, project, name)
    shown = format_ref(cid, version, default_entity, default_project)
    parsed = parse_ref(shown, default_entity, default_project)
    assert parsed.collection == cid and parsed.version_number == version


@SETTINGS
@given(st.text(min_size=1, max_size=80))
def test_alias_rules_are_ascii_only(text):
    if ALIAS_RE.fullmatch(text):
        assert text.isascii() and "\n" not in text


# -- paths ------------------------------------------------------------------------------

path_alphabet = st.sampled_from(list("ab./\\:C \x00\n\x1f\x7f") + ["\x85", "\u00e9", "e\u0301", "\u0130", "\u212a",
                                                                   "K", "k", "\u00df", "ss", ".modelreg", ".."])
path_text = st.one_of(st.lists(path_alphabet, max_size=12).map("".join), st.text(max_size=30))
# Safe parts that still collide in interesting ways: Kelvin sign, dotted I, sharp s, NFC/NFD.
safe_parts = st.sampled_from(["a", "B", "k", "K", "\u212a", "\u00e9", "e\u0301", "\u0130", "i", "\u00df", "ss",
                              "x.bin", "\u01f0", "j\u030c", "\u0390", "\u03aa\u0301", "\u1fd3"])
safe_paths = st.lists(safe_parts, min_size=1, max_size=3).map("/".join)


@SETTINGS
@given(path_text)
def test_a_path_judged_safe_stays_inside_its_target_on_posix_and_windows(path):
    if path_problem(path) is not None:
        return
    # POSIX: joined under a root and normalised, it stays strictly below the root.
    assert posixpath.normpath(posixpath.join("/root", path)).startswith("/root/")
    # Windows: no drive, no UNC, not absolute, no separator of its own.
    assert ntpath.splitdrive(path)[0] == "" and not ntpath.isabs(path) and "\\" not in path
    parts = path.split("/")
    assert all(p not in ("", ".", "..") and p.lower() != ".modelreg" for p in parts)
    assert all(unicodedata.category(c) != "Cc" for c in path)


def caseless(path: str) -> str:
    """Unicode's canonical caseless match (D145): what a case-insensitive, normalising filesystem compares."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", path).casefold())


@SETTINGS
@given(st.lists(st.one_of(path_text, safe_paths), max_size=6))
def test_a_file_list_judged_safe_has_no_clashes(paths):
    if paths_problem(paths) is not None:
        return
    assert all(path_problem(p) is None for p in paths)
    keys = [caseless(p) for p in paths]
    assert len(set(keys)) == len(keys)  # no two paths are the same file on macOS or Windows
    folders = {"/".join(k.split("/")[:i]) for k in keys for i in range(1, k.count("/") + 1)}
    assert not folders & set(keys)  # no path is both a file and a folder


@SETTINGS
@given(st.lists(path_text, min_size=1, max_size=6), st.randoms())
def test_paths_problem_does_not_depend_on_order(paths, rnd):
    shuffled = list(paths)
    rnd.shuffle(shuffled)
    assert (paths_problem(paths) is None) == (paths_problem(shuffled) is None)


@SETTINGS
@given(st.lists(safe_paths, min_size=1, max_size=5), st.data())
def test_any_duplicate_or_case_variant_is_caught(paths, data):
    original = data.draw(st.sampled_from(paths))
    variant = data.draw(st.sampled_from([original, original.upper(), original.lower(), original.swapcase(),
                                         unicodedata.normalize("NFD", original),
                                         unicodedata.normalize("NFC", original)]))
    assume(path_problem(variant) is None)
    assert paths_problem(paths + [variant]) is not None


def test_case_folding_that_changes_normalisation_is_caught():
    """Capital iota with dialytika + tonos folds to a form NFC recomposes differently: still one name."""
    assert paths_problem(["\u0390", "\u03aa\u0301"]) is not None
    assert paths_problem(["a/\u1fd3/x", "a/\u0399\u0308\u0301/x"]) is not None
