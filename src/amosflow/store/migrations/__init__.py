"""Alembic environment and revisions of the store (run by ``amosflow.store._migrate``)."""
