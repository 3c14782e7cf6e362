"""Fixtures of the command-line tests (defined in cli_helpers)."""

from cli_helpers import examples, runner  # noqa: F401
