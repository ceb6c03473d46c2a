"""``./scripts/demo.sh posture``: the posture checks against a bundled tenant on a local Graph.

Starts :class:`pimwatch.graph.fake.FakeGraph` on loopback with the tenant that breaks every check once
(:func:`pimwatch.graph.tenants.violating`, dated around now), points a config at it (``credential:
none``, accepted for loopback only) and runs ``pimwatch posture`` with the given arguments. No tenant,
no credentials, no network.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime

from pimwatch.graph.fake import serve
from pimwatch.graph.tenants import BREAK_GLASS, violating


def main(argv: Sequence[str] | None = None) -> int:
    from pimwatch.cli import main as pimwatch

    with serve(violating(datetime.now(UTC)).copy()) as graph, tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "pimwatch.yaml")
        with open(config, "w", encoding="utf-8") as f:
            f.write(f"graph: {{endpoint: '{graph.url}', credential: none}}\n")
            f.write(f"break_glass: {{accounts: [{', '.join(BREAK_GLASS)}]}}\n")
        sys.stderr.write(f"pimwatch: posture demo: a local Graph at {graph.url} serving a sample tenant\n")
        return pimwatch(["posture", "--config", config, *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
