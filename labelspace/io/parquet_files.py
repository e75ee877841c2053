"""Reading one Parquet file without ``pyarrow.dataset``.

``pyarrow.parquet.read_table`` goes through ``pyarrow.dataset``, whose import pulls in pandas: about a
quarter of a second on every command that opens a build, for nothing a single file needs.
``ParquetFile.read`` reads the same table (schema metadata included) with ``pyarrow.parquet`` alone.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The table of one Parquet file (only ``columns`` when given), with its schema metadata."""
    with pq.ParquetFile(path) as parquet:
        return parquet.read(columns=columns)
