"""Placeholder until the action family lands in this change."""
