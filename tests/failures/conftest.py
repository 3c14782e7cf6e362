"""Fixtures of the failure tests (defined in failure_helpers)."""

from failure_helpers import big_input, run_dir, small_tmpfs  # noqa: F401
