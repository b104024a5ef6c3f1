"""Pain ratings as data, the calibrated pain index and the fitted plant (docs/pain-modelling.md).

- :mod:`.ratings`: a rating stream aligned to frames (``rating``, ``rating_age_s``),
  live from LSL and replayed from ``session.xdf`` with the same values;
- :mod:`.index`: the ``pain_index`` feature from a ``closedloop calibrate`` model;
- :mod:`.plant`: a stimulation → feature model (``closedloop identify``) and its
  overlay on a replay (``closedloop replay --plant``);
- :mod:`.stages`: the frame stages the pipeline runs after the feature extractor.
"""
