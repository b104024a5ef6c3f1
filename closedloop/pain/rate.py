"""``closedloop rate``: type pain ratings at a console; each is published on an LSL marker stream.

A rating is a number on the scale (0-10 by default: an NRS; decimals allowed
for a VAS) followed by Enter; ``q`` (or the end of input) stops. Each is sent
as text (``"7"``) on a one-channel string stream (type ``Markers``, channel
``rating``), stamped with the LSL clock when Enter was pressed, so any
pipeline whose ``[ratings]`` names the stream records it and aligns it to
frames (docs/pain-modelling.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

__all__ = ["parse_line", "run_rate"]


def parse_line(line: str, scale: tuple[float, float]) -> float | str | None:
    """Return the rating a typed line holds, ``"quit"``, None for an empty line, or raise ValueError.

    Raises
    ------
    ValueError
        One line saying what is allowed.
    """
    text = line.strip()
    if not text:
        return None
    if text.lower() in ("q", "quit", "exit"):
        return "quit"
    lo, hi = scale
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a rating: type a number from {lo:g} to {hi:g}, then Enter (q stops)"
        ) from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{text!r} is off the scale: type a number from {lo:g} to {hi:g}")
    return value


def run_rate(
    stream: str,
    lines: Iterable[str],
    say: Callable[[str], None],
    scale: tuple[float, float] = (0.0, 10.0),
    source_id: str | None = None,
    wait_consumer_s: float = 0.0,
    linger_s: float = 1.0,
) -> int:
    """Publish the ratings read from ``lines``; return how many were sent.

    Parameters
    ----------
    stream : str
        LSL stream name (the pipeline's ``[ratings] stream.name``).
    lines : iterable of str
        Typed lines (the console: ``sys.stdin``).
    say : callable
        Prints one line for the operator.
    scale : (float, float)
        The rating scale.
    source_id : str, optional
        LSL source_id (default ``closedloop-rate-<stream>``).
    wait_consumer_s : float
        Wait up to this long for a recording session to connect before reading.
    linger_s : float
        At the end, keep the stream open up to this long while a session is
        connected, so the last ratings are delivered.
    """
    from closedloop.lslconfig import configure_lsl

    configure_lsl()
    import pylsl

    info = pylsl.StreamInfo(stream, "Markers", 1, 0.0, pylsl.cf_string, source_id or f"closedloop-rate-{stream}")
    desc = info.desc()
    desc.append_child("channels").append_child("channel").append_child_value("label", "rating")
    desc.append_child("closedloop").append_child_value("scale", f"{scale[0]:g}-{scale[1]:g}")
    outlet = pylsl.StreamOutlet(info)
    if wait_consumer_s > 0 and not outlet.wait_for_consumers(wait_consumer_s):
        say(f"no session connected within {wait_consumer_s:g} s; ratings are sent anyway")
    sent = 0
    for line in lines:
        try:
            value = parse_line(line, scale)
        except ValueError as e:
            say(str(e))
            continue
        if value is None:
            continue
        if value == "quit":
            break
        t = pylsl.local_clock()
        outlet.push_sample([f"{value:g}"], t)
        sent += 1
        heard = "" if outlet.have_consumers() else " (no session is listening: not recorded)"
        say(f"rating {value:g} sent at {t:.3f}{heard}")
    # liblsl sends from a background thread: closing the outlet at once can cut the last ratings off
    # while a session is still connected, so give them a moment to leave
    deadline = time.monotonic() + linger_s
    while sent and outlet.have_consumers() and time.monotonic() < deadline:
        time.sleep(0.05)
    return sent
