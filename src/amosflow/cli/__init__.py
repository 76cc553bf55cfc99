"""The `amos` command line."""
