"""The `sweeps` command line."""
