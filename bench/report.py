"""Machine description, statistics, plain-text tables and JSON results."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# A column of a table of records: its header, and the record's key or a function of the record.
Column = tuple[str, str | Callable[[dict[str, Any]], Any]]


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    with contextlib.suppress(OSError):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def machine_line(info: dict[str, Any]) -> str:
    load = f", load {info['load_average_1m']}" if "load_average_1m" in info else ""
    return f"machine: {info['cores']} cores, Python {info['python']} ({info['platform']}){load}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 1) -> str:
    cells = [[fmt(c, digits) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = [title, "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def records_table(
    title: str, columns: Sequence[Column], records: Iterable[dict[str, Any]], digits: int = 1
) -> str:
    cells = [[get(r) if callable(get) else r[get] for _, get in columns] for r in records]
    return table(title, [header for header, _ in columns], cells, digits)


def ms(key: str) -> Callable[[dict[str, Any]], float]:
    """A column of a record's seconds, in milliseconds."""
    return lambda record: record[key] * 1000


def ideal_s(n: int, pool: int, latency_s: float) -> float:
    """A broadcast to ``n`` with ``pool`` posts in flight, each ``latency_s``: ceil(n / pool) x latency."""
    return math.ceil(n / pool) * latency_s


def write(name: str, data: dict[str, Any], results_dir: Path | None = None) -> Path:
    """Write ``data`` (with the machine and the command line) as bench/results/<name>-<stamp>.json
    and bench/results/<name>-latest.json; returns the stamped path."""
    folder = results_dir or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "machine": machine(),
        **data,
    }
    text = json.dumps(payload, indent=2, sort_keys=False, default=str)
    stamped = folder / f"{name}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    stamped.write_text(text)
    (folder / f"{name}-latest.json").write_text(text)
    return stamped
