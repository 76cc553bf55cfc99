"""The durable engine: the interpreter workflow, the activities and the Temporal plumbing."""
