"""The single node: one supervisor for Temporal, NATS, the API and a worker."""
