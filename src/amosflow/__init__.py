"""AMOS FLOW: a JSON flow DSL interpreted by one durable Temporal workflow."""

__version__ = "0.1.0"
