"""Configure liblsl before the first LSL call: where streams are discovered.

liblsl reads its configuration once, lazily, on its first use; after that,
``set_config_content`` has no effect. So every entry point calls
:func:`configure_lsl` before it touches any other pylsl function, with the
discovery scope of the pipeline's ``[source] scope``:

``"machine"`` (the default)
    Streams on this computer only: IPv6 off, multicast scope ``machine``,
    ``KnownPeers = {127.0.0.1}``. Tests and CI always use it.
``"lab"``
    liblsl's own configuration stays in force (an ``lsl_api.cfg`` in the
    working directory, ``~/lsl_api/lsl_api.cfg`` or the file ``LSLAPICFG``
    names; without one, liblsl's defaults: multicast on the local network),
    for an amplifier that streams from another computer.

The environment variable ``CLOSEDLOOP_LSL_SCOPE`` overrides both. See
docs/lsl-and-xdf.md.
"""

from __future__ import annotations

import os

__all__ = ["LOOPBACK_CONFIG", "SCOPES", "configure_lsl", "configure_mne_lsl", "scope_help"]

LOOPBACK_CONFIG = """\
[ports]
IPv6 = disable

[multicast]
ResolveScope = machine

[lab]
KnownPeers = {127.0.0.1}

[log]
level = -1

[tuning]
TimeProbeInterval = 0.008
MulticastMinRTT = 0.05
"""

#: Discovery scopes a ``[source]`` may choose.
SCOPES = ("machine", "lab")

_configured: str | None = None


def _requested(scope: str | None) -> str:
    env = os.environ.get("CLOSEDLOOP_LSL_SCOPE")
    value = env or scope or "machine"
    if value == "default":  # the earlier name of "lab"
        value = "lab"
    if value not in SCOPES:
        origin = "CLOSEDLOOP_LSL_SCOPE" if env else "scope"
        raise ValueError(f"{origin} must be 'machine' or 'lab', not {value!r}")
    return value


def configure_lsl(scope: str | None = None) -> str:
    """Set liblsl's configuration once per process and return the scope in force.

    Parameters
    ----------
    scope : {"machine", "lab"}, optional
        Discovery scope (see the module docstring); None: ``"machine"``, or
        whatever an earlier call set.

    Returns
    -------
    str
        The scope in force. The first call wins: liblsl ignores later ones.

    Raises
    ------
    ValueError
        If ``scope`` differs from the scope an earlier call set (liblsl
        cannot change it any more), or is not a known scope.
    """
    global _configured
    if _configured is not None:
        if scope is not None and not os.environ.get("CLOSEDLOOP_LSL_SCOPE") and _requested(scope) != _configured:
            raise ValueError(
                f"LSL discovery was already set to scope {_configured!r} in this process and liblsl reads its "
                f"configuration only once; cannot switch to {scope!r}"
            )
        return _configured
    chosen = _requested(scope)
    if chosen == "machine":
        import pylsl.util

        pylsl.util.set_config_content(LOOPBACK_CONFIG)
    _configured = chosen
    return chosen


def configure_mne_lsl() -> str:
    """Give mne-lsl's own liblsl (it bundles one) the same scope as closedloop's; return it.

    mne-lsl loads a separate copy of liblsl, which reads its configuration
    independently: call this before mne-lsl creates a player, stream or
    resolver.
    """
    scope = configure_lsl()
    if scope == "machine":
        from mne_lsl.lsl import set_config_content

        set_config_content(LOOPBACK_CONFIG)
    return scope


def scope_help(scope: str) -> str:
    """Return a sentence saying where discovery looked and how to widen it."""
    if scope == "machine":
        return (
            'discovery is limited to this computer ([source] scope = "machine"); for a stream on another '
            'computer set [source] scope = "lab" (liblsl then uses its own network configuration, '
            "lsl_api.cfg or the file LSLAPICFG names)"
        )
    return (
        'discovery searched the lab network as liblsl\'s configuration allows ([source] scope = "lab"); '
        "check that the stream runs, that both computers share a network that passes multicast, "
        "or list the amplifier computer in KnownPeers of lsl_api.cfg"
    )
