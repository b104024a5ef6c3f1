"""Synthetic EEG with known truth: the generator, its LSL publisher and synthetic recordings."""
