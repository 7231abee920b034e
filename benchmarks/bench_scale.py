"""Issue 16's scale targets, each against today's path in the same run.

    python benchmarks/bench_scale.py [--workdir DIR] [--quick] [--only traversal,gui,training]

Sections (each a module of its own, also runnable alone):

* ``traversal`` (:mod:`scale_traversal`): CLI ``traverse`` + ``eigen`` of a 512 x 512 x 300
  volume (15 alphas, 5 components, demo model), time and peak RSS, against the code at commit
  8517398; the numerics against it; the same with a 256 px model.
* ``gui`` (:mod:`scale_gui`): the Traverse and Eigen widgets under Xvfb (peak RSS, longest
  block of the GUI thread) and a stored 15 x 512 x 512 x 300 traversal opened lazily (first
  paint, RSS while scrubbing).
* ``training`` (:mod:`scale_training`): peak RSS for cohorts of 60 and 240 volumes, time to
  the first step on a warm cache, throughput against the in-RAM path.

Run it on an otherwise idle machine (it measures wall time and memory); ``--quick`` shrinks
every size to check that the benchmark works. One JSON line per result, then a table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SECTIONS = {"traversal": "scale_traversal", "gui": "scale_gui", "training": "scale_training"}


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="work folder (kept; reused by later runs)")
    parser.add_argument("--quick", action="store_true", help="small sizes: check that it works")
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections to run (default: all)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="napari-latent-scale-"))
    rows = []
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        if name not in SECTIONS:
            parser.error(f"unknown section {name!r}; use {', '.join(SECTIONS)}")
        module = importlib.import_module(SECTIONS[name])
        for row in module.run(workdir / name, quick=args.quick):
            row = {"section": name, **row}
            print(json.dumps(row), flush=True)
            rows.append(row)
    columns = ["section", "name", "ours", "baseline", "ratio", "unit", "peak_gb", "baseline_peak_gb", "target"]
    print("\n" + " | ".join(columns))
    for row in rows:
        print(" | ".join(_cell(row.get(c)) for c in columns))


if __name__ == "__main__":
    main()
