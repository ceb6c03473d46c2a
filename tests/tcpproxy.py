"""A TCP proxy on loopback that can cut the line: a real network outage between a client and a server
(Azurite), at a moment the test chooses, and back.

``cut()`` closes every open connection and refuses new ones (connections are accepted and closed at
once, so a client sees a reset, not a hang); ``restore()`` forwards again.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.up = True
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self.up = False
            for s in list(self._open):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._open.clear()

    def restore(self) -> None:
        with self._lock:
            self.up = True

    def close(self) -> None:
        self._stopped = True
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if not self.up:
                    client.close()
                    continue
                try:
                    server = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                # The timeout bounds the connect only: left on, a server silent for 5 s (a request
                # answered slowly on a loaded machine, an idle keep-alive) would be cut by the proxy.
                server.settimeout(None)
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def proxied(port: int) -> Iterator[Proxy]:
    proxy = Proxy(port)
    try:
        yield proxy
    finally:
        proxy.close()


def table_port(connection_string: str) -> int:
    """The port of the ``TableEndpoint`` in an Azurite connection string."""
    for part in connection_string.split(";"):
        if part.startswith("TableEndpoint="):
            return int(part.split(":")[2].split("/")[0])
    raise ValueError("no TableEndpoint in the connection string")


def via(connection_string: str, proxy: Proxy) -> str:
    """The same connection string with its table endpoint through ``proxy``."""
    port = table_port(connection_string)
    return connection_string.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{proxy.port}/")
