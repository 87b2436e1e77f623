"""The alias policy (SPEC §1, §3): pure functions over an alias map, no disk.

What setting or removing aliases may do — case clashes, `--expect` compare-and-swap,
protected aliases needing `--force` — and what the change is: the new map and its
history events. The registry calls these inside a commit, against the state the
change record will follow, so a check and the change it allows are one atomic step.
"""

from __future__ import annotations

from .errors import Conflict, NotFound


def set_aliases(current: dict, number: int | None, aliases, *, protected, force: bool, expect=None,
                label=lambda n=None: "", reason: str | None = None) -> tuple[dict, list[dict]]:
    """Point `aliases` at `number` (None: a version about to be made): (new map, events).

    `expect` is None (no check), "none" (each alias must be unset) or a number (each must
    point there). Everything is checked before anything changes: all or none.
    """
    folded = {a.casefold(): a for a in current}
    for alias in aliases:
        other = folded.get(alias.casefold())
        if other is not None and other != alias:
            raise Conflict(f"alias {alias!r} clashes with existing alias {other!r} of {label()}",
                           hint="aliases of one collection may not differ only by case")
        if expect is not None:
            actual = current.get(alias)
            if (expect == "none" and actual is not None) or (expect != "none" and actual != expect):
                now_at = "unset" if actual is None else f"v{actual}"
                want = "unset" if expect == "none" else f"v{expect}"
                raise Conflict(f"alias {alias!r} of {label()} is {now_at}, expected {want}",
                               hint="someone else moved it; look at `modelreg history` and try again")
        moving = alias in current and current[alias] != number
        if moving and alias in protected and not force:
            raise Conflict(f"alias {alias!r} is protected; moving it from {label(current[alias])} needs --force",
                           hint="add --force (and --reason TEXT to record why)")
    if number is None:
        return dict(current), []
    new, events = dict(current), []
    for alias in aliases:
        before = current.get(alias)
        if before == number:
            continue
        new[alias] = number
        event = {"event": "alias-set" if before is None else "alias-moved", "alias": alias, "version": number,
                 "to": number}
        if before is not None:
            event["from"] = before
        events.append(_with_reason(event, reason))
    return new, events


def remove_aliases(current: dict, aliases, *, number: int | None, protected, force: bool,
                   label=lambda n=None: "", reason: str | None = None) -> tuple[dict, list[dict]]:
    """Remove `aliases`, all or none: (new map, events). With `number`, each must point there."""
    for alias in aliases:
        if alias not in current:
            raise NotFound(f"alias {alias!r} is not set in {label()}")
        if number is not None and current[alias] != number:
            raise Conflict(f"alias {alias!r} points at {label(current[alias])}, not v{number}")
        if alias in protected and not force:
            raise Conflict(f"alias {alias!r} is protected; removing it needs --force",
                           hint="add --force (and --reason TEXT to record why)")
    new = {a: n for a, n in current.items() if a not in aliases}
    events = [_with_reason({"event": "alias-removed", "alias": a, "version": current[a], "from": current[a]}, reason)
              for a in aliases]
    return new, events


def holders(current: dict, number: int) -> list[str]:
    return sorted(a for a, n in current.items() if n == number)


def _with_reason(event: dict, reason: str | None) -> dict:
    if reason is not None:
        event["reason"] = reason
    return event
