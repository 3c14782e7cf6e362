"""Byte counts as people write and read them: ``4GiB``, ``512 MB``, ``1.5 GiB``."""

from __future__ import annotations

import re

#: Units a size may be written in: decimal (KB, MB...) and binary (KiB, MiB...); case ignored.
UNITS = {"b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
         "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
_SIZE = re.compile(r"\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(value: object) -> int:
    """Bytes from ``4GiB``, ``512 MB``, ``1.5GB``, ``1e9`` or a whole number of bytes; ValueError
    else."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 4GiB or 512MB, found {value!r}")
    if isinstance(value, float) and value.is_integer():  # 1e9 in a YAML file
        value = int(value)
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"a size must be positive, found {value}")
        return value
    found = _SIZE.fullmatch(value) if isinstance(value, str) else None
    unit = found.group(2).lower() if found else ""
    if found is None or (unit and unit not in UNITS):
        raise ValueError(f"expected a size like 4GiB or 512MB (units: B, KB, MB, GB, TB, KiB, "
                         f"MiB, GiB, TiB), found {value!r}")
    size = int(float(found.group(1)) * UNITS[unit or "b"])
    if size < 1:
        raise ValueError(f"a size must be positive, found {value!r}")
    return size


def size_text(count: float) -> str:
    """A byte count for people: ``1.5 GiB``."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while count >= 1024 and power < len(units) - 1:
        count /= 1024
        power += 1
    return f"{count:.0f} bytes" if power == 0 else f"{count:.1f} {units[power]}"
