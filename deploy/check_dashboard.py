"""Check deploy/grafana/taskpilot.json: valid JSON, unique panel ids, and every taskpilot_*
metric it queries is one the code defines (a Counter, Histogram or Gauge under libs/ or
services/). A dashboard on a metric nobody exports shows "No data" forever; this catches it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFINED = re.compile(r"\b(Counter|Histogram|Gauge|Summary)\(\s*[\"'](taskpilot_[a-z0-9_]+)[\"']")
QUERIED = re.compile(r"\btaskpilot_[a-z0-9_]+")
SERIES_SUFFIXES = {"Histogram": ("_bucket", "_sum", "_count"), "Summary": ("_sum", "_count")}


def defined_series() -> set[str]:
    """Every series name the code can export, e.g. a Histogram's _bucket/_sum/_count."""
    names: set[str] = set()
    for tree in ("libs", "services"):
        for path in (ROOT / tree).rglob("*.py"):
            for kind, name in DEFINED.findall(path.read_text()):
                names.add(name)
                names.update(name + suffix for suffix in SERIES_SUFFIXES.get(kind, ()))
    return names


def main(path: Path) -> int:
    dashboard = json.loads(path.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    queried = {name for expr in exprs for name in QUERIED.findall(expr)}
    known = defined_series()
    errors = [f"panel ids are not unique: {ids}"] if len(ids) != len(set(ids)) else []
    errors += [f"{name} is queried but no code defines it" for name in sorted(queried - known)]
    for error in errors:
        print(f"  FAIL {path.name}: {error}")
    summary = f"{len(panels)} panels, {len(exprs)} queries over {len(queried)} series"
    print(f"  {path.name}: {summary}, " + ("all defined in code" if not errors else "see above"))
    return 1 if errors else 0


if __name__ == "__main__":
    default = ROOT / "deploy" / "grafana" / "taskpilot.json"
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else default))
