"""The source contract: the built-in LSL source fulfils it; the runtime only calls what it declares."""

from __future__ import annotations

import ast
from pathlib import Path

from closedloop.sources import LSLSource, Source

RUNTIME = Path(__file__).resolve().parents[2] / "closedloop" / "live" / "runtime.py"


def test_the_lsl_source_fulfils_the_contract():
    source = LSLSource(name="cltest-contract", sfreq=500.0)
    assert isinstance(source, Source)
    declared = set(Source.__annotations__) | {n for n in vars(Source) if not n.startswith("_")}
    assert all(hasattr(source, name) for name in declared)


def test_the_runtime_calls_only_what_the_contract_declares():
    declared = set(Source.__annotations__) | {n for n in vars(Source) if not n.startswith("_")}
    tree = ast.parse(RUNTIME.read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "source"
    }
    assert used and used <= declared, used - declared
