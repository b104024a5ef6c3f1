"""Offline work on recordings: replay, play, sweeps, outcome metrics, reports and file readers."""
