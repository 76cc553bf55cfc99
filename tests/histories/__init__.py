"""Recorded workflow histories of the examples, replayed by tests/engine/test_replay.py."""
