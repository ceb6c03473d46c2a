#!/usr/bin/env python3
"""pimwatch throughput / memory benchmark: parse floor vs the full ``pimwatch replay`` pipeline.

Everything is measured in ONE run so that the figures are comparable on a noisy shared machine:

1. generate (or reuse from the cache dir) the input streams with ``../shared/bench/gen_events.py``:
   200k records one per line, the same 200k as Event Hub envelopes, and with ``--big`` 1M records one
   per line (memory-flatness comparison);
2. measure the parse floor with ``../shared/bench/floor.py`` (orjson parse + the four team rules);
3. run ``python -m pimwatch replay --format jsonl`` as a child process on each input, timing the
   wall clock and reading that child's own peak RSS with ``os.wait4``;
4. print a table and a JSON summary (also written to ``<data-dir>/last-results.json``).

Examples::

    .venv/bin/python bench/run.py                  # 200k lines + 200k envelope
    .venv/bin/python bench/run.py --big            # + 1M lines and the RSS ratio 1M / 200k
    .venv/bin/python bench/run.py --only floor     # parse floor only (no pimwatch needed)
    .venv/bin/python bench/run.py --repeat 3       # best of 3 per measurement

Stdlib only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED_BENCH = REPO.parent / "shared" / "bench"
GEN_EVENTS = SHARED_BENCH / "gen_events.py"
FLOOR = SHARED_BENCH / "floor.py"
DEFAULT_DATA_DIR = REPO / "bench" / ".data"
DEFAULT_PYTHON = REPO / ".venv" / "bin" / "python"

SEED = 42  # gen_events.py default, pinned so the cache key is explicit
BREAK_GLASS_UPNS = (  # the UPNs gen_events.py uses for break-glass sign-ins
    "bg-admin01@contoso.onmicrosoft.com",
    "bg-admin02@contoso.onmicrosoft.com",
    "emergency.access@contoso.onmicrosoft.com",
)
TARGET_REC_PER_S = 100_000
FLAT_RSS_RATIO = 1.25  # peak RSS 1M / 200k at or below this counts as flat
MB = 1e6  # MB/s uses decimal megabytes, like floor.py
SUMMARY_RECORDS = re.compile(r"pimwatch: ([\d,]+) records")  # the stderr summary's first line
ALERT_KIND_KEYS = ("rule", "detector", "kind", "alert_type", "type", "name")


class BenchError(Exception):
    """A fatal, user-facing benchmark error (printed without a traceback)."""


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Input:
    key: str  # stable id used in the JSON summary
    label: str  # human label for the table
    records: int
    envelope: bool
    path: Path

    @property
    def floor_mode(self) -> str:
        return "orjson-envelope+detect" if self.envelope else "orjson+detect"

    def gen_args(self) -> list[str]:
        args = ["-n", str(self.records), "--seed", str(SEED)]
        if self.envelope:
            args.append("--envelope")
        return args


def human_count(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def make_input(data_dir: Path, records: int, envelope: bool) -> Input:
    count = human_count(records)
    suffix = ".eh.jsonl" if envelope else ".jsonl"
    kind = "envelope" if envelope else "lines"
    return Input(
        key=f"{count}-{kind}",
        label=f"{count} {kind}",
        records=records,
        envelope=envelope,
        path=data_dir / f"events-n{records}-s{SEED}{suffix}",
    )


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_input(inp: Input, python: str, gen_sha: str) -> bool:
    """Generate ``inp.path`` unless a file made with the same parameters exists. Returns True if reused."""
    meta_path = inp.path.with_name(inp.path.name + ".meta.json")
    want = {"gen_args": inp.gen_args(), "gen_sha256": gen_sha}
    if inp.path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        if (
            meta.get("gen_args") == want["gen_args"]
            and meta.get("gen_sha256") == want["gen_sha256"]
            and meta.get("bytes") == inp.path.stat().st_size
        ):
            return True
    inp.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = inp.path.with_name(inp.path.name + ".tmp")
    log(f"generating {inp.label}: {inp.path.name} ...")
    t0 = time.perf_counter()
    cmd = [python, str(GEN_EVENTS), *inp.gen_args(), "-o", str(tmp)]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise BenchError(f"gen_events.py failed (rc={proc.returncode}): {proc.stderr.strip()[-2000:]}")
    os.replace(tmp, inp.path)
    meta_path.write_text(json.dumps({**want, "bytes": inp.path.stat().st_size}, indent=1) + "\n")
    log(f"  done in {time.perf_counter() - t0:.1f}s, {inp.path.stat().st_size / MB:.0f} MB")
    return False


# --------------------------------------------------------------------------------------- child runner


@dataclass
class ChildRun:
    returncode: int
    seconds: float  # wall clock, spawn to reap
    maxrss_mb: float  # this child's own peak RSS (MiB)
    cpu_s: float  # user + system CPU seconds of this child (> seconds means it used more than one core)
    timed_out: bool = False


def run_child(
    cmd: list[str],
    *,
    stdout: Path,
    stderr: Path,
    timeout: float | None = None,
    in_repo: bool = False,
    repo: Path = REPO,
) -> ChildRun:
    """Run ``cmd``; reap it with ``os.wait4`` so the peak RSS is this child's alone (not RUSAGE_CHILDREN).

    ``in_repo``: run from the root of ``repo`` (this checkout by default) with it on PYTHONPATH (for
    ``-m pimwatch``).
    """
    env, cwd = (child_env(repo), repo) if in_repo else (None, None)
    timed_out = threading.Event()
    with stdout.open("wb") as out, stderr.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd)

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            _pid, status, rusage = os.wait4(proc.pid, 0)  # EINTR is retried by Python (PEP 475)
        finally:
            if timer is not None:
                timer.cancel()
        seconds = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    proc.returncode = rc  # reaped by us; keep Popen from waiting again
    # ru_maxrss is KiB on Linux, bytes on macOS
    rss_bytes = rusage.ru_maxrss if sys.platform == "darwin" else rusage.ru_maxrss * 1024
    cpu = rusage.ru_utime + rusage.ru_stime
    return ChildRun(rc, seconds, rss_bytes / (1024 * 1024), cpu, timed_out.is_set())


def child_env(repo: Path = REPO) -> dict[str, str]:
    env = dict(os.environ)
    # make ``-m pimwatch`` resolve to that checkout even if the package is not installed in the venv
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH", "")) if p)
    env.pop("PYTHONSTARTUP", None)
    return env


def compile_bytecode(python: str, repo: Path = REPO) -> None:
    """Write the checkout's bytecode caches before measuring, so that start-up is what an installed
    pimwatch pays (with ``PYTHONDONTWRITEBYTECODE`` set, every child would compile its modules from
    source: ~0.1 s of CPU per run, more for a checkout with more code)."""
    dirs = [str(repo / d) for d in ("pimwatch", "detectors") if (repo / d).is_dir()]
    subprocess.run([python, "-m", "compileall", "-q", *dirs], check=False, stdout=subprocess.DEVNULL)


def tail(path: Path, limit: int = 1500) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()


# --------------------------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class Ctx:
    python: str  # interpreter for floor.py and the pipeline
    config: Path  # pimwatch config (break-glass accounts)
    work: Path  # scratch dir: state DBs, alert output, stderr
    timeout: float  # per child, seconds


@dataclass
class FloorResult:
    mode: str
    records: int
    bytes: int
    seconds: float  # loop only (floor.py excludes interpreter start-up)
    rec_per_s: float
    mb_per_s: float
    maxrss_mb: float
    matches: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # user + system CPU of the whole floor.py child (interpreter start-up included)


@dataclass
class PipelineResult:
    records: int
    bytes: int
    seconds: float  # wall clock of the whole child, start-up included
    cpu_s: float  # user + system CPU seconds of the child (one core: cpu_s <= seconds)
    rec_per_s: float
    mb_per_s: float
    maxrss_mb: float  # peak RSS of the best-time run
    maxrss_mb_max: float  # worst peak RSS over all repeats
    alerts: int
    alerts_by_kind: dict[str, int]
    quarantined: int  # lines written to the quarantine file (expected 0 on generated input)
    records_reported: int | None  # record count in pimwatch's stderr summary (should equal records)
    rec_per_s_net: float | None = None  # excluding the empty-input start-up cost
    stderr_tail: str = ""


def measure_floor(ctx: Ctx, inp: Input) -> FloorResult:
    out, err = ctx.work / f"floor-{inp.key}.out", ctx.work / f"floor-{inp.key}.err"
    run = run_child(
        [ctx.python, str(FLOOR), inp.floor_mode, str(inp.path)], stdout=out, stderr=err, timeout=ctx.timeout
    )
    if run.returncode != 0:
        raise BenchError(f"floor.py {inp.floor_mode} failed (rc={run.returncode}): {tail(err)}")
    lines = out.read_text().strip().splitlines()
    if not lines:
        raise BenchError(f"floor.py {inp.floor_mode} printed nothing; stderr: {tail(err)}")
    d = json.loads(lines[-1])
    if d["records"] != inp.records:
        raise BenchError(
            f"floor.py counted {d['records']} records in {inp.path.name}, expected {inp.records}"
        )
    return FloorResult(
        mode=inp.floor_mode,
        records=d["records"],
        bytes=d["bytes"],
        seconds=d["seconds"],
        rec_per_s=float(d["rec_per_s"]),
        mb_per_s=float(d["MB_per_s"]),
        maxrss_mb=round(run.maxrss_mb, 1),
        matches=d.get("matches", {}),
        cpu_s=round(run.cpu_s, 3),
    )


def pipeline_cmd(python: str, config: Path, run_dir: Path, path: Path) -> list[str]:
    # --quarantine into the run dir: the default would drop a file into the cwd (the repo root)
    return [
        python,
        "-m",
        "pimwatch",
        "replay",
        "--format",
        "jsonl",
        "--config",
        str(config),
        "--state",
        str(run_dir / "state.db"),
        "--quarantine",
        str(run_dir / "quarantine.jsonl"),
        str(path),
    ]


def count_alerts(path: Path) -> tuple[int, dict[str, int]]:
    n = 0
    kinds: Counter[str] = Counter()
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            n += 1
            try:
                d = json.loads(line)
            except ValueError:
                kinds["<not json>"] += 1
                continue
            if isinstance(d, dict):
                kind = next((d[k] for k in ALERT_KIND_KEYS if isinstance(d.get(k), str)), "<unknown>")
                kinds[kind] += 1
    return n, dict(sorted(kinds.items()))


@dataclass
class PipeRun:
    run: ChildRun
    alerts: int
    alerts_by_kind: dict[str, int]
    quarantined: int
    records_reported: int | None
    stderr_tail: str
    alerts_path: Path  # the alerts it printed (kept until the work dir goes)


def run_pipeline_once(ctx: Ctx, inp_path: Path, tag: str) -> PipeRun:
    """One ``pimwatch replay`` child on a fresh state DB (a reused DB would dedupe every alert)."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"pipe-{tag}-", dir=ctx.work))
    out, err = run_dir / "alerts.jsonl", run_dir / "stderr.txt"
    cmd = pipeline_cmd(ctx.python, ctx.config, run_dir, inp_path)
    run = run_child(cmd, stdout=out, stderr=err, timeout=ctx.timeout, in_repo=True)
    if run.timed_out:
        raise BenchError(f"pimwatch replay on {inp_path.name} timed out after {ctx.timeout:.0f}s")
    if run.returncode != 0:
        raise BenchError(f"pimwatch replay on {inp_path.name} failed (rc={run.returncode}):\n{tail(err)}")
    n, kinds = count_alerts(out)
    quarantine = run_dir / "quarantine.jsonl"
    quarantined = 0
    if quarantine.exists():
        with quarantine.open("rb") as f:
            quarantined = sum(1 for _ in f)
    m = SUMMARY_RECORDS.search(tail(err, 1 << 16))
    reported = int(m.group(1).replace(",", "")) if m else None
    return PipeRun(run, n, kinds, quarantined, reported, tail(err, 600), out)


@dataclass
class Row:
    inp: Input
    bytes: int
    reused_input: bool
    floor: FloorResult | None = None
    pipeline: PipelineResult | None = None
    floor_cpu_s: float | None = None  # least CPU of the floor's repeats (whole child)
    pipe_cpu_s: float | None = None  # least CPU of the pipeline's repeats (whole child)

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.pipeline is None:
            return None
        return self.pipeline.rec_per_s / self.floor.rec_per_s

    @property
    def cpu_ratio(self) -> float | None:
        """The pipeline's rate over the floor's in CPU time (issue 14's measure): both whole
        processes, start-up included, so the load of a shared machine cancels."""
        if not self.floor_cpu_s or not self.pipe_cpu_s:
            return None
        return self.floor_cpu_s / self.pipe_cpu_s

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.inp.key,
            "label": self.inp.label,
            "file": str(self.inp.path),
            "records": self.inp.records,
            "bytes": self.bytes,
            "reused_input": self.reused_input,
            "floor": asdict(self.floor) if self.floor else None,
            "pipeline": asdict(self.pipeline) if self.pipeline else None,
            "ratio_pipeline_to_floor": round(self.ratio, 3) if self.ratio is not None else None,
            "floor_cpu_s": self.floor_cpu_s,
            "pipeline_cpu_s": self.pipe_cpu_s,
            "cpu_ratio_pipeline_to_floor": round(self.cpu_ratio, 3) if self.cpu_ratio is not None else None,
        }


def best_pipeline(inp: Input, size: int, runs: list[PipeRun], startup_s: float | None) -> PipelineResult:
    """Best (fastest) of the repeats; peak RSS of that run plus the worst peak RSS over all repeats."""
    b = min(runs, key=lambda r: r.run.seconds)
    net = b.run.seconds - startup_s if startup_s is not None else None
    if b.records_reported is not None and b.records_reported != inp.records:
        log(
            f"WARNING: {inp.label}: pimwatch reports {b.records_reported:,} records, the input has "
            f"{inp.records:,}"
        )
    if len({r.alerts for r in runs}) > 1:
        log(f"WARNING: alert count differs across repeats for {inp.label}: {[r.alerts for r in runs]}")
    return PipelineResult(
        records=inp.records,
        bytes=size,
        seconds=round(b.run.seconds, 3),
        cpu_s=round(b.run.cpu_s, 3),
        rec_per_s=round(inp.records / b.run.seconds),
        mb_per_s=round(size / b.run.seconds / MB, 1),
        maxrss_mb=round(b.run.maxrss_mb, 1),
        maxrss_mb_max=round(max(r.run.maxrss_mb for r in runs), 1),
        alerts=b.alerts,
        alerts_by_kind=b.alerts_by_kind,
        quarantined=b.quarantined,
        records_reported=b.records_reported,
        rec_per_s_net=round(inp.records / net) if net and net > 0 else None,
        stderr_tail=b.stderr_tail,
    )


# --------------------------------------------------------------------------------------------- report


def fmt_int(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def fmt_f(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x:,.{nd}f}"


def render_table(rows: list[Row]) -> str:
    headers = [
        "input",
        "MB",
        "floor rec/s",
        "floor MB/s",
        "pipe rec/s",
        "pipe MB/s",
        "pipe/floor",
        "CPU pipe/floor",
        "pipe net rec/s",
        "pipe RSS MB",
        "floor RSS MB",
        "alerts",
    ]
    body: list[list[str]] = []
    for r in rows:
        fl, pl = r.floor, r.pipeline
        body.append(
            [
                r.inp.label,
                fmt_f(r.bytes / MB, 0),
                fmt_int(fl.rec_per_s if fl else None),
                fmt_f(fl.mb_per_s if fl else None),
                fmt_int(pl.rec_per_s if pl else None),
                fmt_f(pl.mb_per_s if pl else None),
                fmt_f(r.ratio, 2),
                fmt_f(r.cpu_ratio, 2),
                fmt_int(pl.rec_per_s_net if pl else None),
                fmt_f(pl.maxrss_mb if pl else None),
                fmt_f(fl.maxrss_mb if fl else None),
                fmt_int(pl.alerts if pl else None),
            ]
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(b) for b in body)])


def build_summary(a: argparse.Namespace, ctx: Ctx, rows: list[Row], extra: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {
            "cpus": os.cpu_count(),
            "platform": sys.platform,
            "loadavg_1m": round(os.getloadavg()[0], 2),
        },
        "python": ctx.python,
        "config": str(ctx.config),
        "repeat": a.repeat,
        **extra,
        "target_rec_per_s": TARGET_REC_PER_S,
        "inputs": [r.as_json() for r in rows],
    }
    by_key = {r.inp.key: r for r in rows}
    base = by_key.get(f"{human_count(a.records)}-lines")
    big = by_key.get(f"{human_count(a.big_records)}-lines") if a.big else None
    if base and base.pipeline:
        s["target_met"] = base.pipeline.rec_per_s >= TARGET_REC_PER_S
    if base and big:
        if base.pipeline and big.pipeline:
            s["rss_ratio_big_vs_base_pipeline"] = round(big.pipeline.maxrss_mb / base.pipeline.maxrss_mb, 3)
        if base.floor and big.floor:
            s["rss_ratio_big_vs_base_floor"] = round(big.floor.maxrss_mb / base.floor.maxrss_mb, 3)
    s["checks"] = consistency_checks(a, by_key)
    return s


def consistency_checks(a: argparse.Namespace, by_key: dict[str, Row]) -> list[str]:
    """Problems a fast-but-wrong pipeline would hide: records dropped, envelopes read differently."""
    problems = []
    for r in by_key.values():
        pl = r.pipeline
        if pl and pl.records_reported is not None and pl.records_reported != r.inp.records:
            problems.append(
                f"{r.inp.label}: pimwatch reports {pl.records_reported:,} records, "
                f"the input has {r.inp.records:,}"
            )
        if pl and pl.quarantined:
            problems.append(f"{r.inp.label}: {pl.quarantined:,} records quarantined (input is valid)")
    lines = by_key.get(f"{human_count(a.records)}-lines")
    env = by_key.get(f"{human_count(a.records)}-envelope")
    if lines and env and lines.pipeline and env.pipeline and lines.pipeline.alerts != env.pipeline.alerts:
        problems.append(
            f"same records, different alerts: {lines.pipeline.alerts} ({lines.inp.label}) vs "
            f"{env.pipeline.alerts} ({env.inp.label})"
        )
    return problems


def verdict_lines(s: dict[str, Any]) -> list[str]:
    out = []
    if s.get("pipeline_startup_s") is not None:
        out.append(
            f"pipeline start-up on an empty input: {s['pipeline_startup_s']:.3f}s "
            "(included in 'pipe rec/s', excluded from 'pipe net rec/s')"
        )
    if "target_met" in s:
        first = s["inputs"][0]
        out.append(
            f"target >= {TARGET_REC_PER_S:,} rec/s on the default mix ({first['label']}): "
            f"{'MET' if s['target_met'] else 'NOT MET'} ({first['pipeline']['rec_per_s']:,.0f} rec/s)"
        )
    if "rss_ratio_big_vs_base_pipeline" in s:
        r = s["rss_ratio_big_vs_base_pipeline"]
        out.append(
            f"peak RSS ratio, pipeline big/base: {r:.2f} "
            f"({'flat' if r <= FLAT_RSS_RATIO else 'NOT flat'}; ~1.0 = flat)"
        )
    if "rss_ratio_big_vs_base_floor" in s:
        out.append(f"peak RSS ratio, floor big/base:    {s['rss_ratio_big_vs_base_floor']:.2f}")
    for row in s["inputs"]:
        cpu = row.get("cpu_ratio_pipeline_to_floor")
        if cpu is not None:
            out.append(
                f"CPU-time ratio pipeline/floor, {row['label']}: {cpu:.2f} "
                f"(issue 14 target >= 1.0: {'MET' if cpu >= 1.0 else 'NOT MET'})"
            )
    out.extend(f"CHECK FAILED: {p}" for p in s.get("checks", []))
    if s.get("pipeline_unavailable"):
        out.append(f"pipeline NOT measured: {s['pipeline_unavailable']}")
    return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--big",
        action="store_true",
        help="also run 1M records one per line and report the peak-RSS ratio 1M / 200k",
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs per measurement, the fastest is kept (default 1)"
    )
    ap.add_argument(
        "--only", choices=("floor", "pipeline"), help="measure only the parse floor or only the pipeline"
    )
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep the work dir (state DBs, alert output, stderr) and print its path",
    )
    ap.add_argument(
        "--python",
        default=None,
        help="interpreter for floor.py and the pipeline (default <repo>/.venv/bin/python)",
    )
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="cache dir for the generated inputs (default bench/.data)",
    )
    ap.add_argument(
        "--config",
        type=Path,
        default=None,
        help="pimwatch config to use instead of the generated break-glass config",
    )
    ap.add_argument(
        "--records", type=int, default=200_000, help="records in the base inputs (default 200000)"
    )
    ap.add_argument(
        "--big-records", type=int, default=1_000_000, help="records in the --big input (default 1000000)"
    )
    ap.add_argument(
        "--timeout", type=float, default=3600.0, help="per-child timeout in seconds (default 3600)"
    )
    ap.add_argument(
        "--json-out",
        type=Path,
        default=None,
        help="where to write the JSON summary (default <data-dir>/last-results.json)",
    )
    a = ap.parse_args(argv)
    if a.repeat < 1:
        ap.error("--repeat must be >= 1")
    return a


def resolve_python(arg: str | None) -> str:
    if arg:
        p = shutil.which(arg) or arg
        if not Path(p).exists():
            raise BenchError(f"--python {arg}: not found")
        return str(Path(p).absolute())
    return str(DEFAULT_PYTHON) if DEFAULT_PYTHON.exists() else sys.executable


def write_config(work: Path) -> Path:
    cfg = work / "bench-config.yaml"
    lines = [
        "# written by bench/run.py: the break-glass UPNs gen_events.py uses",
        "break_glass:",
        "  accounts:",
    ]
    lines += [f"    - {upn}" for upn in BREAK_GLASS_UPNS]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def check_pipeline_available(ctx: Ctx) -> str | None:
    """Return None if ``python -m pimwatch replay`` is runnable, else the reason it is not."""
    out, err = ctx.work / "preflight.out", ctx.work / "preflight.err"
    cmd = [ctx.python, "-m", "pimwatch", "replay", "--help"]
    run = run_child(cmd, stdout=out, stderr=err, timeout=120, in_repo=True)
    if run.returncode != 0:
        return f"`{' '.join(cmd)}` exited {run.returncode}: {tail(err, 800)}"
    return None


def measure_startup(ctx: Ctx, repeat: int) -> float:
    """Best wall clock of the pipeline on an empty input: interpreter + imports + state DB setup."""
    empty = ctx.work / "empty.jsonl"
    empty.write_bytes(b"")
    best = min(run_pipeline_once(ctx, empty, "empty").run.seconds for _ in range(max(repeat, 2)))
    log(f"pipeline start-up (empty input): {best:.3f}s")
    return best


def measure_all(
    ctx: Ctx, inputs: list[Input], sizes: dict[str, int], repeat: int, parts: frozenset[str]
) -> tuple[dict[str, list[FloorResult]], dict[str, list[PipeRun]]]:
    do_floor, do_pipe = "floor" in parts, "pipeline" in parts
    floors: dict[str, list[FloorResult]] = {inp.key: [] for inp in inputs}
    pipes: dict[str, list[PipeRun]] = {inp.key: [] for inp in inputs}
    # interleave floor and pipeline, input by input and repeat by repeat: drift on a shared box hits both
    for rep in range(repeat):
        for inp in inputs:
            if do_floor:
                fr = measure_floor(ctx, inp)
                floors[inp.key].append(fr)
                log(
                    f"[{rep + 1}/{repeat}] floor    {inp.label:>12}: {fr.rec_per_s:>10,.0f} rec/s "
                    f"{fr.mb_per_s:>7.1f} MB/s  rss {fr.maxrss_mb:5.0f} MB  {fr.seconds:.2f}s (loop only)"
                )
            if do_pipe:
                pr = run_pipeline_once(ctx, inp.path, inp.key)
                pipes[inp.key].append(pr)
                sec = pr.run.seconds
                log(
                    f"[{rep + 1}/{repeat}] pipeline {inp.label:>12}: {inp.records / sec:>10,.0f} rec/s "
                    f"{sizes[inp.key] / sec / MB:>7.1f} MB/s  rss {pr.run.maxrss_mb:5.0f} MB  {sec:.2f}s"
                    f" (cpu {pr.run.cpu_s:.2f}s)"
                    f"  alerts {pr.alerts}"
                )
    return floors, pipes


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    for p in (GEN_EVENTS, FLOOR):
        if not p.is_file():
            raise BenchError(f"missing {p} (expected the shared bench tools at <repo>/../shared/bench/)")
    if a.config and not a.config.is_file():
        raise BenchError(f"--config {a.config}: not found")
    python = resolve_python(a.python)
    do_floor = a.only in (None, "floor")
    do_pipe = a.only in (None, "pipeline")
    data_dir: Path = a.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pimwatch-bench-"))
    exit_code = 0
    try:
        config = a.config.resolve() if a.config else write_config(work)
        ctx = Ctx(python=python, config=config, work=work, timeout=a.timeout)
        if do_pipe:
            compile_bytecode(python)
        unavailable = check_pipeline_available(ctx) if do_pipe else None
        if unavailable:
            if a.only == "pipeline":
                raise BenchError(f"pipeline not available: {unavailable}")
            log(f"WARNING: pipeline not available, measuring the floor only: {unavailable}")
            do_pipe, exit_code = False, 2

        inputs = [make_input(data_dir, a.records, False), make_input(data_dir, a.records, True)]
        if a.big:
            inputs.append(make_input(data_dir, a.big_records, False))
        gen_sha = file_sha256(GEN_EVENTS)
        reused = {inp.key: ensure_input(inp, python, gen_sha) for inp in inputs}
        sizes = {inp.key: inp.path.stat().st_size for inp in inputs}

        startup_s = measure_startup(ctx, a.repeat) if do_pipe else None
        parts = frozenset(n for n, on in (("floor", do_floor), ("pipeline", do_pipe)) if on)
        floors, pipes = measure_all(ctx, inputs, sizes, a.repeat, parts)
        rows = []
        for inp in inputs:
            fl, pl = floors[inp.key], pipes[inp.key]
            rows.append(
                Row(
                    inp=inp,
                    bytes=sizes[inp.key],
                    reused_input=reused[inp.key],
                    floor=max(fl, key=lambda f: f.rec_per_s) if fl else None,
                    pipeline=best_pipeline(inp, sizes[inp.key], pl, startup_s) if pl else None,
                    floor_cpu_s=round(min(f.cpu_s for f in fl), 3) if fl else None,
                    pipe_cpu_s=round(min(p.run.cpu_s for p in pl), 3) if pl else None,
                )
            )
        extra = {
            "pipeline_startup_s": round(startup_s, 3) if startup_s is not None else None,
            "pipeline_unavailable": unavailable,
            "work_dir": str(work) if a.keep else None,
        }
        summary = build_summary(a, ctx, rows, extra)
        print(render_table(rows))
        print()
        print("\n".join(verdict_lines(summary)))
        print()
        print(json.dumps(summary, indent=1))
        json_out: Path = a.json_out or (data_dir / "last-results.json")
        json_out.write_text(json.dumps(summary, indent=1) + "\n")
        log(f"JSON summary written to {json_out}")
    finally:
        if a.keep:
            log(f"kept work dir (state DBs, alerts, stderr): {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"bench: error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
