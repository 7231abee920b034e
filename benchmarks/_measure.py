"""Run one command in this process and record its wall time and peak RSS (a helper of the scale benchmarks).

    python benchmarks/_measure.py RESULT.json -- -m napari_latent traverse ...
    python benchmarks/_measure.py RESULT.json -- script.py args...

The result file gets ``{"seconds": ..., "peak_rss_bytes": ..., "exit": ...}``. The peak is the
process's own high-water mark (``VmHWM`` in ``/proc/self/status``, else ``ru_maxrss``), so
every command measured through it has its own peak, not the largest of all children.
"""

from __future__ import annotations

import json
import resource
import runpy
import sys
import time
from pathlib import Path


def peak_rss_bytes() -> int:
    """This process's peak resident set size in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def main() -> None:
    result_path = Path(sys.argv[1])
    if sys.argv[2] != "--":
        raise SystemExit("usage: _measure.py RESULT.json -- (-m MODULE | SCRIPT) ARGS...")
    rest = sys.argv[3:]
    start = time.perf_counter()
    code = 0
    try:
        if rest[0] == "-m":
            sys.argv = [rest[1], *rest[2:]]
            runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = rest
            runpy.run_path(rest[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    seconds = time.perf_counter() - start
    result_path.write_text(json.dumps({"seconds": seconds, "peak_rss_bytes": peak_rss_bytes(), "exit": code}))
    sys.exit(code)


if __name__ == "__main__":
    main()
