"""Test configuration: keep LSL on this machine before anything touches liblsl."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from closedloop.lslconfig import configure_lsl

configure_lsl()  # before any other LSL call: machine-only resolution, IPv6 off, KnownPeers 127.0.0.1

# Filter designs and montage positions kept on disk (closedloop.diskcache) go to a folder of this run,
# not the user's cache; subprocesses inherit it.
if "CLOSEDLOOP_CACHE_DIR" not in os.environ:
    os.environ["CLOSEDLOOP_CACHE_DIR"] = tempfile.mkdtemp(prefix="closedloop-test-cache-")
    atexit.register(shutil.rmtree, os.environ["CLOSEDLOOP_CACHE_DIR"], True)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def unique_name(request) -> str:
    """A stream name no other test (or other process) uses."""
    return f"cltest-{request.node.name[:30]}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def repo() -> Path:
    return REPO


def pytest_collection_modifyitems(config, items) -> None:
    """Mark everything under ``tests/integration/`` (real LSL, live sessions, emulators, subprocesses)."""
    integration = Path(__file__).resolve().parent / "integration"
    for item in items:
        if integration in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def wait_for_stream(name: str, timeout: float = 60.0) -> None:
    """Wait until an LSL stream called ``name`` can be resolved on this machine (a subprocess started it).

    A freshly started ``closedloop synth`` needs a few seconds to import before it publishes; on a
    busy machine many more. Tests wait on that condition instead of trusting a resolve timeout.
    """
    import pylsl

    if not pylsl.resolve_bypred(f"name='{name}'", 1, timeout):
        raise AssertionError(f"LSL stream {name!r} did not appear within {timeout} s")
