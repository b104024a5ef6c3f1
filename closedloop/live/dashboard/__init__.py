"""The operator's live view in the browser (docs/dashboard.md).

- :mod:`.state`: what the page shows, as JSON-ready snapshots and deltas;
- :mod:`.feed`: the loop's bounded queues into it;
- :mod:`.server`: the Tornado server (page, WebSocket, stop and rating endpoints, access control);
- :mod:`.ratings`: pain ratings as the LSL stream ``closedloop-ratings``;
- :mod:`.recorded`: the same page on a recorded session (``closedloop view``).

Importing this package imports neither Tornado nor Plotly.
"""
