"""Azurite (the Azure Storage emulator, from npm) for the tests: installed once, started per session.

``azurite_storage`` is a session fixture that yields a connection string to an Azurite table *and*
blob service on loopback (``azurite_tables`` is the same fixture under its older name). Azurite is
installed with npm into ``$AZURITE_HOME`` (default
``~/.cache/pimwatch-azurite``, outside the repository) the first time it is needed; the tests that
use it are skipped, with the reason, when npm is missing or the install fails (they fail instead
when ``PIMWATCH_REQUIRE_AZURITE`` is set, as CI should). The server is
started with in-memory persistence (in a temporary working directory) on a free port and stopped
by its process id at the end (SIGTERM, then SIGKILL after a timeout: Azurite does not always exit
on SIGTERM).

Its servers never close an idle keep-alive connection (:data:`NO_IDLE_CLOSE`): Node's default closes one
5 s after its last response, and a client that reuses it at that moment (or sends on it while a loaded
machine starves Node past that timer) gets ``RemoteDisconnected``. Clients retry that in production;
the tests that cut the line run with ``retry_total=0`` and must see a connection drop only when
they cut it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

AZURITE_VERSION = "3.37.0"
# The well-known development account of the storage emulators (public, documented by Microsoft).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
INSTALL_TIMEOUT = 300.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
# Preloaded into Azurite's Node (``--require``): keepAliveTimeout 0 disables the idle close. Azurite's
# table and blob servers (3.37) have no option for it and keep Node's 5 s default; the queue server
# sets its own before listening, which this overrides too.
NO_IDLE_CLOSE = """\
const http = require("http");
const listen = http.Server.prototype.listen;
http.Server.prototype.listen = function (...args) {
  this.keepAliveTimeout = 0;
  return listen.apply(this, args);
};
"""


def azurite_home() -> Path:
    return Path(os.environ.get("AZURITE_HOME") or Path.home() / ".cache" / "pimwatch-azurite")


def find_or_install() -> Path:
    """The ``azurite-table`` (or ``azurite``) binary, installing Azurite first if it is missing."""
    home = azurite_home()
    found = _binary(home)
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("Azurite is not installed and npm is not on PATH (install Node.js >= 20 with npm)")
    home.mkdir(parents=True, exist_ok=True)
    with _install_lock(home):  # two test sessions at once must not run npm in the same folder
        found = _binary(home)
        if found is not None:
            return found
        try:
            done = subprocess.run(
                [
                    npm,
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    str(home),
                    f"azurite@{AZURITE_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(f"npm install azurite@{AZURITE_VERSION} into {home} failed: {exc}")
    found = _binary(home)
    if done.returncode != 0 or found is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        _unavailable(
            f"npm install azurite@{AZURITE_VERSION} into {home} failed (exit {done.returncode}): "
            + " | ".join(tail)
        )
    return found


@contextlib.contextmanager
def _install_lock(home: Path) -> Iterator[None]:
    with (home / ".install.lock").open("w") as f:
        try:
            import fcntl
        except ImportError:  # Windows: no lock, npm's own
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _unavailable(reason: str) -> NoReturn:
    """Skip — or fail, when ``PIMWATCH_REQUIRE_AZURITE`` is set (CI: a skip must not hide a problem)."""
    if os.environ.get("PIMWATCH_REQUIRE_AZURITE"):
        pytest.fail(f"{reason} (PIMWATCH_REQUIRE_AZURITE is set)")
    pytest.skip(reason)


def _binary(home: Path) -> Path | None:
    bin_dir = home / "node_modules" / ".bin"
    for name in ("azurite",):
        path = bin_dir / name
        if path.exists():
            return path
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def connection_string(table_port: int, blob_port: int | None = None) -> str:
    text = (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"TableEndpoint=http://127.0.0.1:{table_port}/{DEV_ACCOUNT};"
    )
    if blob_port is not None:
        text += f"BlobEndpoint=http://127.0.0.1:{blob_port}/{DEV_ACCOUNT};"
    return text


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate by process id, then kill that process id if it has not exited in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def running_azurite() -> Iterator[str]:
    binary = find_or_install()
    port, blob_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory(prefix="pimwatch-azurite-") as location:
        args = [
            str(binary),
            "--silent",
            "--skipApiVersionCheck",
            "--inMemoryPersistence",
            "--disableTelemetry",
        ]
        # --location is refused together with --inMemoryPersistence (3.37): the temporary folder is
        # only the working directory (Azurite writes nothing there in memory mode).
        args += ["--tableHost", "127.0.0.1", "--tablePort", str(port)]
        args += ["--blobHost", "127.0.0.1", "--blobPort", str(blob_port)]
        args += ["--queueHost", "127.0.0.1", "--queuePort", str(_free_port())]
        log = Path(location) / "azurite.log"
        preload = Path(location) / "no-idle-close.js"
        preload.write_text(NO_IDLE_CLOSE)
        node_options = f'{os.environ.get("NODE_OPTIONS", "")} --require "{preload}"'.strip()
        env = {**os.environ, "NODE_OPTIONS": node_options}
        with log.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=location, env=env)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not (_accepts(port) and _accepts(blob_port)):
                if proc.poll() is not None:
                    text = log.read_text(errors="replace")[-2000:]
                    pytest.fail(f"Azurite exited with {proc.returncode} before listening: {text}")
                if time.monotonic() > deadline:
                    pytest.fail(f"Azurite not listening on 127.0.0.1:{port}/{blob_port} in {START_TIMEOUT} s")
                time.sleep(0.05)
            yield connection_string(port, blob_port)
        finally:
            stop(proc)


@pytest.fixture(scope="session")
def azurite_storage() -> Iterator[str]:
    """A connection string to a fresh Azurite (tables and blobs) on loopback, for the whole session."""
    with running_azurite() as conn:
        yield conn


@pytest.fixture(scope="session")
def azurite_tables(azurite_storage: str) -> str:
    """The same Azurite, under the name the Table store tests use."""
    return azurite_storage
