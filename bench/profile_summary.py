"""Summaries of py-spy ``--format raw`` (collapsed stacks) profiles: per process, where samples land."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
FUNCTION_DIR = re.compile(r"lambdas/(?P<name>[^/]+)/app\.py")


def _short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarise_raw(path: Path, top: int = 12) -> dict[str, Any]:
    self_time: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    labels: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # --subprocesses nests a child's frames under "process PID:cmdline" of each ancestor.
        leading = [f for f in frames if f.startswith("process ")]
        process = leading[-1] if leading else "process"
        body = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not body:
            continue
        function = next((m["name"] for f in body if (m := FUNCTION_DIR.search(f))), None)
        if function and process not in labels:
            labels[process] = f"{function} worker"
        totals[process] += count
        short = [_short(f) for f in body]
        self_time[process][short[-1]] += count
        for frame in set(short):
            inclusive[process][frame] += count
    processes = []
    for process, samples in totals.most_common():
        pid = process.split(":")[0].removeprefix("process ").strip()
        label = labels.get(process) or (
            "gateway + runtime + moto (stack)" if "local_stack up" in process else process[:60]
        )
        processes.append(
            {
                "process": f"{label} [{pid}]",
                "samples": samples,
                "top_self": self_time[process].most_common(top),
                "top_inclusive": inclusive[process].most_common(top + 8),
            }
        )
    return {"file": str(path), "total_samples": sum(totals.values()), "processes": processes}


def render_summary(summary: dict[str, Any], processes: int = 6, frames: int = 8) -> str:
    if "error" in summary:
        return f"profile: {summary['error']}"
    total = summary["total_samples"] or 1
    lines = [f"profile of the stack (py-spy, {summary['file']}): share of all CPU samples"]
    for proc in summary["processes"][:processes]:
        lines.append(f"  {proc['process']}: {100 * proc['samples'] / total:.1f}%")
        for frame, count in proc["top_self"][:frames]:
            lines.append(f"      {100 * count / total:5.1f}%  {frame}")
    return "\n".join(lines)
