#!/usr/bin/env python3
"""Broken-file recovery benchmark: the reader's time and peak memory on broken input of 1, 4, 16 MB.

Issue 10: the old recovery was super-linear (1 MB 0.6 s, 2 MB 8.4 s, 4 MB 43 s) and a bad first line
made memory grow with the file. Each case below is written at every size from the same records
(``../shared/bench/gen_events.py``, seed 42) and read by ``pimwatch.detection.reader.read_file`` in a child
process; the child's time for the read loop and its own peak RSS (VmHWM) are reported.
Linear means the time per MB stays the same as the size grows; flat memory means the peak RSS does.

Cases:
  truncated-line   JSON Lines, one record cut in half in the middle of the file
  bad-first-line   JSON Lines whose first line is cut in half (the old reader buffered the file)
  pretty-broken    a pretty-printed JSON array; one element in the middle has an unterminated string
  pretty-unclosed  a pretty-printed JSON array; one element in the middle stops half-way
  junk-middle      JSON Lines with 10 % of the file, in the middle, text that is no JSON at all
  page-truncated   one pretty-printed {"value": [...]} page (a Graph export) cut off in its last record

Examples::

    .venv/bin/python bench/recovery.py                      # 1, 4, 16 MB, every case, best of 3
    .venv/bin/python bench/recovery.py --sizes 1 4 16 50 --repeat 1
    .venv/bin/python bench/recovery.py --pythonpath ../main  # the same on another checkout's reader

Stdlib only (the child imports pimwatch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GEN_EVENTS = REPO.parent / "shared" / "bench" / "gen_events.py"
CASES = (
    "truncated-line",
    "bad-first-line",
    "pretty-broken",
    "pretty-unclosed",
    "junk-middle",
    "page-truncated",
)
CHILD = """
import sys, time
from pimwatch.detection.reader import Bad, Routed, read_file
t = time.perf_counter()
routed = bad = 0
for item in read_file(sys.argv[1], [0]):
    routed += type(item) is Routed
    bad += type(item) is Bad
seconds = time.perf_counter() - t
try:  # this process's own peak (ru_maxrss after fork+exec can carry the parent's)
    with open("/proc/self/status") as status:
        peak = next(int(x.split()[1]) for x in status if x.startswith("VmHWM:"))
except OSError:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, routed, bad, peak)
"""


def records(n: int) -> list[bytes]:
    out = subprocess.run(
        [sys.executable, str(GEN_EVENTS), "-n", str(n), "--seed", "42"], check=True, capture_output=True
    ).stdout
    return [line for line in out.split(b"\n") if line.strip()]


def build(case: str, lines: list[bytes], size: int) -> tuple[bytes, int]:
    """(file bytes of about ``size`` bytes, the number of records written whole)."""
    total, chosen = 0, []
    for line in lines:
        if total >= size:
            break
        chosen.append(line)
        total += len(line) + 1
    mid = len(chosen) // 2
    if case == "truncated-line":
        chosen[mid] = chosen[mid][: len(chosen[mid]) // 2]
        return b"\n".join(chosen) + b"\n", len(chosen) - 1
    if case == "bad-first-line":
        chosen[0] = chosen[0][: len(chosen[0]) // 2]
        return b"\n".join(chosen) + b"\n", len(chosen) - 1
    if case == "junk-middle":
        junk = (b"this is not JSON: a stack trace, a note, a log line without braces\n" * (size // 680))[
            : size // 10
        ]
        return b"\n".join(chosen[:mid]) + b"\n" + junk + b"\n".join(chosen[mid:]) + b"\n", len(chosen)
    if case == "page-truncated":
        page = json.dumps({"@odata.context": "x", "value": [json.loads(line) for line in chosen]}, indent=2)
        data = page.encode()
        return data[: data.rindex(b'"properties"')], len(chosen) - 1
    pretty = [json.dumps(json.loads(line), indent=2).encode() for line in chosen]
    if case == "pretty-broken":
        pretty[mid] = pretty[mid].replace(b'": "', b'": ', 1)  # an unterminated string
    else:  # pretty-unclosed
        pretty[mid] = pretty[mid][: len(pretty[mid]) // 2]
    return b"[\n" + b",\n".join(pretty) + b"\n]\n", len(chosen) - 1


def measure(path: Path, pythonpath: str) -> tuple[float, float, int, int]:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    # Run from the file's folder: "-c" puts the working directory first on sys.path.
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, env=env, cwd=path.parent
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    if proc.wait():
        raise SystemExit(f"child failed on {path} (exit {proc.returncode})")
    seconds, routed, bad, peak_kib = out.split()
    return float(seconds), int(peak_kib) / 1024, int(routed), int(bad)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 4, 16], help="file sizes in MB")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--repeat", type=int, default=3, help="best of N per measurement")
    ap.add_argument("--pythonpath", default=str(REPO), help="the checkout whose reader is measured")
    args = ap.parse_args()
    biggest = int(max(args.sizes) * 1e6)
    lines = records(biggest // 3000 + 100)
    print(f"{'case':<16} {'MB':>5} {'seconds':>8} {'s/MB':>7} {'peak RSS MiB':>13} {'read':>7} {'bad':>4}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="pimwatch-recovery-") as tmp:
        for case in args.cases:
            for mb in args.sizes:
                data, whole = build(case, lines, int(mb * 1e6))
                path = Path(tmp) / f"{case}-{mb}.json"
                path.write_bytes(data)
                best = min((measure(path, args.pythonpath) for _ in range(args.repeat)), key=lambda m: m[0])
                seconds, rss, routed, bad = best
                if routed != whole:
                    print(f"CHECK FAILED: {case} {mb} MB read {routed} of {whole} whole records")
                size = len(data) / 1e6
                print(
                    f"{case:<16} {size:>5.1f} {seconds:>8.3f} {seconds / size:>7.3f} "
                    f"{rss:>13.1f} {routed:>7} {bad:>4}"
                )
                rows.append(
                    {
                        "case": case,
                        "mb": size,
                        "seconds": seconds,
                        "peak_rss_mib": rss,
                        "read": routed,
                        "bad": bad,
                    }
                )
                path.unlink()
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
