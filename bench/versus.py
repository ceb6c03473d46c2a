"""Replay throughput of this checkout against another one (say the code before a change), in one run.

Both run ``pimwatch replay`` (the command of ``bench/run.py``) on the same generated input (default
mix, seed 42, line per record), in pairs whose order alternates (A B, B A, ...), so a drift in the
load of a shared machine hits both sides. Each child's CPU time (user + system, ``os.wait4``) is
read; the ratio of one pair is ``CPU(other) / CPU(this)`` = this checkout's rate / the other's
(> 1: this one is faster). The median over the pairs is the figure; min and max show the noise.
A difference in the number of alerts printed is noted (a fast replay that skips records shows
there, unless the change is meant to alter what is detected).

    git worktree add ../base 8e88542          # the other checkout (it needs its dependencies)
    .venv/bin/python bench/versus.py ../base --pairs 6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from run import (
    DEFAULT_DATA_DIR,
    GEN_EVENTS,
    REPO,
    BenchError,
    compile_bytecode,
    count_alerts,
    ensure_input,
    file_sha256,
    log,
    make_input,
    pipeline_cmd,
    resolve_python,
    run_child,
    tail,
    write_config,
)


def _replay(
    python: str, repo: Path, config: Path, work: Path, path: Path, timeout: float
) -> tuple[float, int]:
    """One replay from ``repo`` on a fresh state: (CPU seconds, alerts printed)."""
    run_dir = Path(tempfile.mkdtemp(prefix="versus-", dir=work))
    out, err = run_dir / "alerts.jsonl", run_dir / "stderr.txt"
    run = run_child(
        pipeline_cmd(python, config, run_dir, path),
        stdout=out,
        stderr=err,
        timeout=timeout,
        in_repo=True,
        repo=repo,
    )
    if run.timed_out or run.returncode != 0:
        raise BenchError(f"pimwatch replay from {repo} failed (rc={run.returncode}):\n{tail(err)}")
    return run.cpu_s, count_alerts(out)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("other", type=Path, help="root of the other checkout (a git worktree)")
    ap.add_argument("--records", type=int, default=60_000, help="records in the input (default 60000)")
    ap.add_argument("--pairs", type=int, default=6, help="paired runs (default 6)")
    ap.add_argument("--python", default=None, help="interpreter for this checkout (default .venv/bin/python)")
    ap.add_argument("--other-python", default=None, help="for the other (default its .venv/bin/python)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--timeout", type=float, default=600.0)
    a = ap.parse_args(argv)
    other = a.other.resolve()
    other_python = a.other_python or str(other / ".venv" / "bin" / "python")
    try:
        python = resolve_python(a.python)
        a.data_dir.mkdir(parents=True, exist_ok=True)
        inp = make_input(a.data_dir, a.records, envelope=False)
        ensure_input(inp, python, file_sha256(GEN_EVENTS))
        ratios: list[float] = []
        with tempfile.TemporaryDirectory(prefix="pimwatch-versus-") as tmp:
            work = Path(tmp)
            config = write_config(work)
            sides = [("this", python, REPO), ("other", other_python, other)]
            for _, py, repo in sides:
                compile_bytecode(py, repo)
            for i in range(a.pairs):
                cpu: dict[str, float] = {}
                alerts: dict[str, int] = {}
                for name, py, repo in sides if i % 2 == 0 else sides[::-1]:
                    cpu[name], alerts[name] = _replay(py, repo, config, work, inp.path, a.timeout)
                if alerts["this"] != alerts["other"]:  # expected only if the change alters detection
                    log(f"NOTE: alert counts differ: this {alerts['this']}, other {alerts['other']}")
                ratios.append(cpu["other"] / cpu["this"])
                log(
                    f"pair {i + 1}: CPU this {cpu['this']:.3f}s, other {cpu['other']:.3f}s,"
                    f" ratio {ratios[-1]:.3f}"
                )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"replay of {a.records:,} records, rate of this checkout / {other.name}: median "
        f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} pairs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
