"""Serve a WSGI emulator on 127.0.0.1 in a background thread, for tests and benchmarks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server


@contextmanager
def serve_wsgi(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT/``) of ``app`` served until the block ends."""
    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="emulator", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serve_until_interrupted(app: Any, host: str, port: int, banner: Callable[[str], str]) -> None:
    """Serve ``app`` in the foreground until Ctrl-C, first printing ``banner(base URL)``."""
    server = make_server(host, port, app, threaded=True)
    print(banner(f"http://{host}:{server.server_port}/"), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
