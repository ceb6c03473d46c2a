"""What the Graph dependency (pimwatch[graph]) costs at start: CPU seconds of fresh interpreters, the
median of 7 runs each (CPU time, not wall time: the machine is shared).

    .venv/bin/python bench/graph_cold.py

1. ``import function_app``: the app's cold start; the Event Hub path imports no msgraph
   (tests/test_graph_client.py), so this is the same with or without the extra installed;
2. the same plus building the posture Graph client (imports msgraph, kiota, azure.identity);
3. the same plus a whole posture run against the local Graph (server in the same process).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT = (
    "from pimwatch.graph.client import GraphClient\n"
    "from pimwatch.graph.settings import GraphSettings\n"
    "GraphClient(GraphSettings(endpoint='http://127.0.0.1:9', credential='none')).open()\n"
)
RUN = (
    "import contextlib, io\n"
    "from pimwatch.cli.posture_demo import main\n"
    "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
    "    main([])\n"
)
CASES = {
    "import function_app": "import function_app\n",
    "+ posture Graph client built": "import function_app\n" + CLIENT,
    "+ one posture run (local Graph)": "import function_app\n" + CLIENT + RUN,
}


def main() -> None:
    for name, code in CASES.items():
        runs = []
        for _ in range(7):
            out = subprocess.run(
                [sys.executable, "-c", code + "import time\nprint(time.process_time())"],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            runs.append(float(out.stdout.strip().splitlines()[-1]))
        spread = f"(min {min(runs):.2f}, max {max(runs):.2f})"
        print(f"{name:<36} CPU median {statistics.median(runs):.2f} s {spread}")


if __name__ == "__main__":
    main()
