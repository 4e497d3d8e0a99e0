"""Pieces of scripts/bench: timed spawns, scenarios, report, PNG chart."""
