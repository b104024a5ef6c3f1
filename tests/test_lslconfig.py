"""Discovery scope: one concept for liblsl's configuration and the pipeline's ``[source] scope``."""

from __future__ import annotations

import pytest

from closedloop.lslconfig import configure_lsl, scope_help
from closedloop.sources import LSLSource, SourceError
from closedloop.sources.lsl import predicate


def test_the_scope_is_fixed_once_and_a_different_one_is_refused_not_ignored():
    assert configure_lsl() == "machine"  # conftest configured this process for the machine
    assert configure_lsl("machine") == "machine"
    with pytest.raises(ValueError, match="already set to scope 'machine'"):
        configure_lsl("lab")
    # a pipeline asking for the lab network in such a process gets a one-line source error, before any network call
    with pytest.raises(SourceError, match="cannot switch to 'lab'"):
        LSLSource(name="cltest-never-resolved", scope="lab", resolve_timeout_s=0.1).open()


def test_the_help_says_where_discovery_looked_and_how_to_widen_it():
    assert "limited to this computer" in scope_help("machine") and 'scope = "lab"' in scope_help("machine")
    assert "KnownPeers" in scope_help("lab")


def test_type_is_matched_ignoring_case_and_quotes_are_safe():
    pred = predicate(name="amp", type="EEG")
    assert pred == "name='amp' and translate(type,'ABCDEFGHIJKLMNOPQRSTUVWXYZ','abcdefghijklmnopqrstuvwxyz')='eeg'"
    assert predicate(name="Bob's amp") == 'name="Bob\'s amp"'
    with pytest.raises(SourceError, match="both kinds of quote"):
        predicate(name="a'b\"c")
