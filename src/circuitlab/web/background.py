"""Serve the web lab from a background thread (notebooks, tests, benchmarks): `with serving(app) as url: ...`."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def serving(app: Any, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 20.0) -> Iterator[str]:
    """Serve `app` with uvicorn on `host:port` (port 0: a free one) in a daemon thread until the block ends;
    yields the base URL, e.g. "http://127.0.0.1:54321"."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port == 0:  # a free port; uvicorn binds it itself (a socket handed over answers ~40 ms slower per request)
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True, name="circuitlab-serve")
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the web lab did not start on {host}:{port} within {start_timeout_s:g} s")
            time.sleep(0.02)
        yield f"http://{f'[{host}]' if family == socket.AF_INET6 else host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
