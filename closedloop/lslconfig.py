"""Configure liblsl before the first LSL call.

liblsl reads its configuration once, lazily, on its first use; after that,
``set_config_content`` has no effect. Tests and benchmarks must keep LSL
traffic on this machine (docs/lsl-and-xdf.md), so every entry point calls
:func:`configure_lsl` before it touches any other pylsl function.
"""

from __future__ import annotations

import os

LOOPBACK_CONFIG = """\
[ports]
IPv6 = disable

[multicast]
ResolveScope = machine

[lab]
KnownPeers = {127.0.0.1}

[log]
level = -1
"""

_configured: str | None = None


def configure_lsl(scope: str = "machine") -> str:
    """Set liblsl's configuration once per process and return what was set.

    Parameters
    ----------
    scope : {"machine", "default"}
        ``"machine"`` (default) keeps resolution on this machine: IPv6 off,
        multicast scope ``machine`` and ``KnownPeers = {127.0.0.1}``; liblsl
        logs warnings and errors only.
        ``"default"`` leaves liblsl's own configuration (an ``lsl_api.cfg``
        or ``LSLAPICFG``) in force, for labs whose amplifier runs on another
        computer. The environment variable ``CLOSEDLOOP_LSL_SCOPE`` overrides
        the argument.

    Returns
    -------
    str
        The scope in force. The first call wins; liblsl ignores later ones.
    """
    global _configured
    if _configured is not None:
        return _configured
    scope = os.environ.get("CLOSEDLOOP_LSL_SCOPE", scope)
    if scope not in ("machine", "default"):
        raise ValueError(f"CLOSEDLOOP_LSL_SCOPE must be 'machine' or 'default', not {scope!r}")
    if scope == "machine":
        import pylsl.util

        pylsl.util.set_config_content(LOOPBACK_CONFIG)
    _configured = scope
    return scope
