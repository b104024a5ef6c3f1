"""Per-session bookkeeping shared by live sessions and replays: counters, telemetry, the summary."""
