"""A TCP proxy that forwards until told to stall: then it keeps every connection open and passes
nothing on, like a hung server or a middlebox that lost its state. TCP stays healthy (the proxy's
kernel acknowledges everything), so only a client-side bound on each answer can notice.

    with StallingProxy(cluster.host, cluster.port, stall_after=1_000_000) as proxy:
        ...  # connect to 127.0.0.1:proxy.port; proxy.heal() forwards again
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class StallingProxy:
    def __init__(
        self, host: str, port: int, stall_after: int | None = None, stall_on_query: bool = False
    ) -> None:
        """`stall_after` bytes forwarded in all, or at the first query after login (`stall_on_query`:
        a server that lets the client in and then says nothing)."""
        self.upstream = (host, port)
        self.stall_after = stall_after
        self.stall_on_query = stall_on_query
        self.forwarded = 0
        self.stalled = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def heal(self) -> None:
        """Forward again; the connections that saw the stall are closed (their clients gave up)."""
        with self._lock:
            self.stall_after = None
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _close(pair)
        self.stalled.clear()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.heal()

    def __enter__(self) -> StallingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=((client, server),), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, server = pair
        other = {client: server, server: client}
        try:
            while not self._closed.is_set() and pair in self._pairs:
                if self.stalled.is_set():
                    self._closed.wait(0.1)
                    continue
                ready, _, _ = select.select([client, server], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return _close(pair)
                    if self.stall_on_query and sock is client and data[:1] in (b"Q", b"P"):
                        self.stalled.set()  # a simple or extended-protocol query: never passed on
                        break
                    other[sock].sendall(data)
                    with self._lock:
                        self.forwarded += len(data)
                        if self.stall_after is not None and self.forwarded >= self.stall_after:
                            self.stalled.set()
        except OSError:
            _close(pair)


def _close(pair: tuple[socket.socket, socket.socket]) -> None:
    for sock in pair:
        with contextlib.suppress(OSError):
            sock.close()
