"""The live runtime: an LSL source, the session clock, the watchdog thread and the displays."""
