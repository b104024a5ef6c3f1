"""Pain ratings from the dashboard, published as the LSL stream ``closedloop-ratings``.

The stream is an ordinary LSL stream, so it is recorded like any
``[recording] streams`` entry (the live session adds it to the streams it
records into ``session.xdf``), LabRecorder records it, and any rating
consumer reads it the same way whether the ratings come from this dashboard
or from another program publishing the same layout:

- name ``closedloop-ratings``, type ``Rating``, irregular rate, ``double64``;
- channels ``pain_nrs`` (0–10 numeric rating scale, unit ``NRS``),
  ``prompted`` (1: answers a scheduled prompt, 0: given at will) and
  ``response_time_s`` (prompt to answer; NaN at will);
- stamped with the local LSL clock at the moment the rating was entered
  (the page's delay between the entry and the request is subtracted);
- ``desc/scale`` holds the scale (``min`` 0, ``max`` 10 and its anchors),
  ``desc/closedloop`` the session id and identity; ``source_id`` is
  ``closedloop-<session id>-ratings``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from closedloop.lslconfig import configure_lsl

__all__ = ["RATINGS_STREAM", "RATINGS_TYPE", "RATING_CHANNELS", "RatingsOutlet"]

RATINGS_STREAM = "closedloop-ratings"
RATINGS_TYPE = "Rating"
RATING_CHANNELS = ("pain_nrs", "prompted", "response_time_s")
_UNITS = ("NRS", "", "s")


class RatingsOutlet:
    """Publish 0–10 pain ratings on LSL.

    Parameters
    ----------
    session_id : str
        Part of the ``source_id``.
    identity : dict, optional
        Participant and session labels for the header.
    """

    def __init__(self, session_id: str, identity: Mapping[str, str] | None = None) -> None:
        configure_lsl()
        import pylsl

        from closedloop import __version__

        self.source_id = f"closedloop-{session_id}-ratings"
        info = pylsl.StreamInfo(
            RATINGS_STREAM, RATINGS_TYPE, len(RATING_CHANNELS), pylsl.IRREGULAR_RATE, pylsl.cf_double64, self.source_id
        )
        desc = info.desc()
        chans = desc.append_child("channels")
        for label, unit in zip(RATING_CHANNELS, _UNITS):
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", unit)
            ch.append_child_value("type", "rating")
        scale = desc.append_child("scale")
        scale.append_child_value("name", "numeric rating scale (NRS) of pain intensity")
        scale.append_child_value("min", "0")
        scale.append_child_value("max", "10")
        scale.append_child_value("min_anchor", "no pain")
        scale.append_child_value("max_anchor", "worst pain imaginable")
        meta = desc.append_child("closedloop")
        meta.append_child_value("role", "ratings")
        meta.append_child_value("session_id", session_id)
        meta.append_child_value("version", __version__)
        if identity:
            node = meta.append_child("identity")
            for k, v in identity.items():
                node.append_child_value(str(k), str(v))
        self._outlet = pylsl.StreamOutlet(info, chunk_size=0, max_buffered=600)
        self.count = 0

    def push(self, value: float, time: float, prompted: bool = False, response_time_s: float = math.nan) -> None:
        """Publish one rating (0–10) entered at ``time`` (local LSL clock).

        Raises
        ------
        ValueError
            For a value outside 0–10 or not a number.
        """
        if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 10.0):
            raise ValueError(f"a pain rating is a number from 0 to 10, not {value!r}")
        self._outlet.push_sample([float(value), float(prompted), float(response_time_s)], float(time))
        self.count += 1

    def close(self) -> None:
        """Close the outlet."""
        self._outlet = None
