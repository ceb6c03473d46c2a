"""``pimwatch archive list|fetch``: the quarantine and the dead letters, from a local folder or Blob Storage.

The source is ``--dir DIR`` (a local folder, e.g. ``PIMWATCH_QUARANTINE_DIR``), else the container of
``--kind`` on the ``PIMWATCH_STORAGE`` account, from the same app settings as the runtime
(:mod:`pimwatch.hosting.azure_settings`). ``fetch --to DIR`` downloads the files so that ``pimwatch replay
DIR``
replays the quarantine (docs/archive.md).

Exit codes: 0 done, 1 the archive could not be read or a file not written, 2 usage or a missing or
invalid setting.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from pimwatch.detection.timeutil import parse_time
from pimwatch.hosting.azure_settings import ENV_STORAGE, SettingsError, azure_storage, blob_archive
from pimwatch.state.archive import Archive, ArchiveError, Entry, FileArchive

KINDS = ("quarantine", "deadletters")


def add_parser(sub: Any) -> None:
    ap = sub.add_parser(
        "archive", help="list or download the quarantine and the dead letters (local folder or Blob Storage)"
    )
    ap.add_argument("action", choices=("list", "fetch"))
    ap.add_argument("--kind", choices=KINDS, default="quarantine", help="which archive (default: quarantine)")
    ap.add_argument(
        "--dir",
        help="a local folder to read instead of Blob Storage (default: the container on the account "
        f"of {ENV_STORAGE} or {ENV_STORAGE}__accountName / __blobServiceUri)",
    )
    ap.add_argument(
        "--to",
        metavar="DIR",
        help="fetch: the folder to download into (kept: files already there with the same size are skipped)",
    )
    ap.add_argument("--since", metavar="DATE", help="only files written on or after DATE (ISO 8601, UTC)")


def run(args: argparse.Namespace) -> int:
    since: datetime | None = None
    if args.since:
        since = parse_time(args.since)
        if since is None:
            return _usage(f"--since {args.since!r} is not a date or an ISO 8601 time")
    if args.action == "fetch" and not args.to:
        return _usage("archive fetch needs --to DIR (the folder to download into)")
    if args.action == "fetch" and args.dir and Path(args.to).resolve() == Path(args.dir).resolve():
        return _usage("--to and --dir are the same folder")
    try:
        archive = _open(args)
    except SettingsError as exc:
        return _usage(str(exc))
    try:
        entries = archive.entries(since)
        if args.action == "list":
            _list(archive, entries)
        else:
            _fetch(archive, entries, Path(args.to), args.kind)
    except ArchiveError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"pimwatch: cannot write into {args.to}: {exc.strerror or exc}\n")
        return 1
    return 0


def _usage(message: str) -> int:
    sys.stderr.write(f"pimwatch: {message}\n")
    return 2


def _open(args: argparse.Namespace) -> Archive:
    if args.dir:
        if not Path(args.dir).is_dir():
            raise SettingsError(f"--dir {args.dir}: no such folder")
        return FileArchive(args.dir)
    storage = azure_storage()
    if storage is None:
        raise SettingsError(
            f"no archive to read: give --dir DIR, or set {ENV_STORAGE} (a storage connection string) or "
            f"{ENV_STORAGE}__accountName / {ENV_STORAGE}__blobServiceUri (managed identity)"
        )
    container = storage.quarantine_container if args.kind == "quarantine" else storage.deadletter_container
    return blob_archive(storage, container)


def _list(archive: Archive, entries: list[Entry]) -> None:
    out = sys.stdout
    if not entries:
        out.write(f"Nothing archived in {archive.location}.\n")
        return
    width = max(len(e.name) for e in entries)
    out.write(f"{'NAME':<{width}}  {'SIZE':>12}  {'RECORDS':>8}  MODIFIED (UTC)\n")
    for e in entries:
        out.write(f"{e.name:<{width}}  {e.size:>12,}  {e.records:>8,}  {e.modified:%Y-%m-%d %H:%M:%S}\n")
    total = sum(e.records for e in entries)
    out.write(f"{len(entries)} files, {total:,} records in {archive.location}\n")


def _fetch(archive: Archive, entries: list[Entry], to: Path, kind: str) -> None:
    root = to.resolve()
    fetched = skipped = records = 0
    for e in entries:
        dest = (root / e.name).resolve()
        if not dest.is_relative_to(root):
            sys.stderr.write(f"pimwatch: skipped {e.name!r}: not a path inside {to}\n")
            continue
        if dest.is_file() and dest.stat().st_size == e.size:
            skipped += 1
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        with part.open("wb") as f:
            for chunk in archive.chunks(e.name):
                f.write(chunk)
        os.replace(part, dest)  # a file is there whole or not at all
        fetched += 1
        records += e.records
    sys.stderr.write(
        f"pimwatch: fetched {fetched} files ({records:,} records) from {archive.location} into {to}"
        + (f"; {skipped} already there" if skipped else "")
        + "\n"
    )
    if kind == "quarantine" and (fetched or skipped):
        sys.stderr.write(f"  replay them once the cause is fixed: pimwatch replay {to}\n")
