"""A module whose import fails, for the resolution tests."""

raise RuntimeError("no licence for the frobnicator")
