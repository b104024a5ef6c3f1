"""docs/safety.md lists every limit of every shipped device profile, with the profile's value."""

from __future__ import annotations

import re

from closedloop.config.profile import list_profiles

ROW = re.compile(r"^\| `(?P<name>[A-Za-z0-9_]+)` \| (?P<value>[^|]+) \|", re.MULTILINE)


def doc_tables(text: str) -> dict[str, dict[str, float]]:
    """``### <profile>`` sections of the limits chapter → {limit: value} from their table rows."""
    out = {}
    for section in re.split(r"^### ", text, flags=re.MULTILINE)[1:]:
        name, _, body = section.partition("\n")
        body = re.split(r"^## ", body, flags=re.MULTILINE)[0]
        out[name.strip()] = {m["name"]: float(m["value"]) for m in ROW.finditer(body)}
    return out


def test_every_limit_of_every_shipped_profile_is_in_docs_safety(repo):
    tables = doc_tables((repo / "docs" / "safety.md").read_text(encoding="utf-8"))
    profiles = list_profiles([repo / "devices"])
    assert len(profiles) == len(list((repo / "devices").glob("*.toml")))  # every file loads
    missing, wrong = [], []
    for prof in profiles:
        listed = tables.get(prof.device.name, {})
        for name, lim in prof.limits.items():
            if name not in listed:
                missing.append(f"{prof.device.name}.{name}")
            elif listed[name] != lim.value:
                wrong.append(f"{prof.device.name}.{name}: docs {listed[name]:g}, profile {lim.value:g}")
        stale = set(listed) - set(prof.limits)
        wrong += [f"{prof.device.name}.{n}: in docs/safety.md, not in the profile" for n in sorted(stale)]
    assert not missing, f"docs/safety.md does not list: {missing}"
    assert not wrong, wrong
    assert set(tables) >= {p.device.name for p in profiles}


def test_the_doc_check_notices_a_missing_limit():
    text = "### p\n\n| limit | value | unit | source |\n| --- | --- | --- | --- |\n| `a_s` | 1.5 | s | x |\n\n## Next\n"
    assert doc_tables(text) == {"p": {"a_s": 1.5}}
    assert doc_tables(text.replace("| `a_s` | 1.5 | s | x |\n", "")) == {"p": {}}
