"""Run every benchmark in turn (`make bench`); each prints its own table. The figures recorded in
docs/benchmarks.md come from these runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RUNS = [
    ["p2p_bench.py"],
    ["node_bench.py"],
    ["gateway_bench.py"],
    ["control_codec_bench.py"],
]


def main() -> int:
    for run in RUNS:
        print(f"\n== {' '.join(run)}", flush=True)
        code = subprocess.call([sys.executable, str(BENCH / run[0]), *run[1:]])
        if code:
            return code
    print("\n== js-client bundle size", flush=True)
    return subprocess.call(["npm", "run", "--silent", "-w", "js-client", "size"], cwd=BENCH.parent)


if __name__ == "__main__":
    sys.exit(main())
