"""Needs a package this machine does not have: importing it fails, as modules of real
checkouts do on a worker that lacks one of their dependencies."""

import sweeps_standin_missing_dependency  # noqa: F401

ExtraNet = None
