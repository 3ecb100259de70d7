"""Running the app with uvicorn: in the foreground (`clipfuse serve`) or in a background thread
(tests, benchmarks). The socket is bound first, so that a busy port is one error line and
port 0 gives a free port whose number is known before the server starts."""

from __future__ import annotations

import socket
import threading
import time

from clipfuse.errors import ClipfuseError


def bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise ClipfuseError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _server(app, log_level: str):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False))


def serve_forever(app, sock: socket.socket, log_level: str = "warning") -> None:
    _server(app, log_level).run(sockets=[sock])


class BackgroundServer:
    """`with BackgroundServer(app) as url:` a real uvicorn server on 127.0.0.1 and a free port,
    ready (its /readyz answered 200) when the block starts, shut down when it ends."""

    def __init__(self, app, host: str = "127.0.0.1", ready_timeout: float = 120.0):
        self.app = app
        self.sock = bind(host, 0)
        self.url = url_of(self.sock)
        self.ready_timeout = ready_timeout
        self.server = _server(app, "warning")
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> str:
        import urllib.error
        import urllib.request

        self.thread.start()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=5):
                    return self.url  # 2xx (a 503 while warming up raises HTTPError)
            except (urllib.error.URLError, OSError):
                pass
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"server at {self.url} did not get ready in {self.ready_timeout:g} s")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
