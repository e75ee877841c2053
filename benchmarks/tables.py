"""The plain-text table every benchmark prints: a header, a rule, left-aligned columns two spaces apart.

Benchmarks run as scripts (``python benchmarks/x.py``), so their own folder is first on ``sys.path`` and
``from tables import table`` finds this file.
"""
from __future__ import annotations


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [header, tuple("-" * width for width in widths), *rows]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in lines)
