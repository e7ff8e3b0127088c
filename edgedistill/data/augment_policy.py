"""Check a timm auto-augment string (data.auto_augment) when the config loads.

timm parses it only when the transform is built, after the teacher has loaded, and it skips any
section without a digit without a word: "rand-m9-mstd0,5" trains with no magnitude noise. The
grammar below is timm.data.auto_augment's (rand_augment_transform, augment_and_mix_transform,
auto_augment_transform), without importing timm, which would cost seconds on every config load.
"""

from __future__ import annotations

import re

# Policy -> {section key: type of its value}; rand also takes "t<name>" (a transform set).
SECTIONS = {
    "rand": {"m": int, "n": int, "mstd": float, "mmax": int, "inc": int, "p": float},
    "augmix": {"m": int, "w": int, "d": int, "a": float, "b": int, "mstd": float},
    **{name: {"mstd": float} for name in ("original", "originalr", "v0", "v0r", "3a")},
}
EXAMPLE = "rand-m9-mstd0.5-inc1"


def auto_augment_error(value: str) -> str | None:
    """What is wrong with `value` (one clause), or None when timm will read it as written."""
    if value == "":
        return None
    policy, *sections = value.split("-")
    if policy not in SECTIONS:
        return f"the policy '{policy}' is not one of {', '.join(SECTIONS)}"
    known = SECTIONS[policy]
    for section in sections:
        if policy == "rand" and section.startswith("t") and len(section) > 1:
            continue
        match = re.fullmatch(r"([a-z]+)(\d.*)", section)
        if match is None or match.group(1) not in known:
            keys = ", ".join(known) + (", t<set>" if policy == "rand" else "")
            return f"the section '{section}' is not a setting of {policy} ({keys}, each followed by its number)"
        key, number = match.groups()
        try:
            known[key](number)
        except ValueError:
            return f"'{section}' needs {'a whole number' if known[key] is int else 'a number'} after '{key}'"
    return None
