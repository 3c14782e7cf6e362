"""Tests of the built-in operations (a package, so its conftest never shadows tests/conftest.py)."""
