"""Benchmark ``pimwatch report`` on the 200k-record bench stream, against ``pimwatch replay`` of the same
file in the same run (so the figure is a CPU-time ratio, not a number that drifts with the machine's load).

    .venv/bin/python bench/report.py [--records 200000] [--repeat 2]

For each repeat, interleaved: ``replay`` (the detectors alone) and ``report`` (the detectors, every
audit record kept as an event, the frames, the charts, the HTML and the CSVs) on the same input, each in
its own process, reaped with ``os.wait4`` for its own CPU time and peak RSS. Prints both, and the
ratio report / replay of the best CPU times. The input is generated (and cached in bench/.data/) by
``../shared/bench/gen_events.py`` exactly as bench/run.py does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from run import (
    DEFAULT_DATA_DIR,
    GEN_EVENTS,
    ChildRun,
    ensure_input,
    file_sha256,
    make_input,
    resolve_python,
    run_child,
    tail,
    write_config,
)


def _run(python: str, cmd: list[str], work: Path, tag: str) -> ChildRun:
    out, err = work / f"{tag}.out", work / f"{tag}.err"
    run = run_child([python, "-m", "pimwatch", *cmd], stdout=out, stderr=err, in_repo=True)
    if run.returncode != 0:
        sys.exit(f"{tag} failed (rc={run.returncode}): {tail(err)}")
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--python", help="interpreter with pimwatch[report] (default: .venv/bin/python)")
    a = ap.parse_args(argv)
    python = resolve_python(a.python)
    inp = make_input(DEFAULT_DATA_DIR, a.records, envelope=False)
    ensure_input(inp, python, file_sha256(GEN_EVENTS))
    size_mb = inp.path.stat().st_size / 1e6
    replay: list[ChildRun] = []
    report: list[ChildRun] = []
    with tempfile.TemporaryDirectory(prefix="pimwatch-bench-report-") as tmp:
        work = Path(tmp)
        config = write_config(work)
        for i in range(a.repeat):
            replay.append(
                _run(
                    python,
                    [
                        "replay",
                        "--format",
                        "jsonl",
                        "--config",
                        str(config),
                        "--quarantine",
                        str(work / "q.jsonl"),
                        str(inp.path),
                    ],
                    work,
                    f"replay{i}",
                )
            )
            report.append(
                _run(
                    python,
                    ["report", "--config", str(config), "--out", str(work / f"report{i}"), str(inp.path)],
                    work,
                    f"report{i}",
                )
            )
        html_kb = (work / "report0" / "report.html").stat().st_size / 1024
        summary = (work / "report0.err").read_text(encoding="utf-8").strip()
    best_replay = min(replay, key=lambda r: r.cpu_s)
    best_report = min(report, key=lambda r: r.cpu_s)
    print(f"input: {inp.path.name} ({a.records:,} records, {size_mb:,.0f} MB), best of {a.repeat}")
    for name, r in (("replay", best_replay), ("report", best_report)):
        print(f"  {name:<7} wall {r.seconds:6.1f} s  cpu {r.cpu_s:6.1f} s  peak RSS {r.maxrss_mb:6.0f} MiB")
    print(f"  report / replay CPU time: {best_report.cpu_s / best_replay.cpu_s:.2f}")
    print(f"  report.html: {html_kb:,.0f} KiB; {summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
