"""Fixtures of the failure tests (defined in failure_helpers)."""

from failure_helpers import big_input, run_dir  # noqa: F401
