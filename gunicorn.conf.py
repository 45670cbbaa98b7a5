"""gunicorn settings for every way the API is served.

gunicorn reads ./gunicorn.conf.py by itself, so the Procfile, `make serve`, the Dockerfile and
the end-to-end tests (all started from the project root) share it; flags on their command
lines still win.
"""

from __future__ import annotations

import gc
from typing import Any


def post_worker_init(worker: Any) -> None:
    """Tune the cycle collector once the worker has loaded the app.

    A plan of 100k rows allocates about a million short-lived containers (the JSON rows, the
    parsed invoices, the result rows), none of them in a reference cycle: reference counting
    frees them all. At the default threshold the cycle collector runs every 700 allocations
    and spends a quarter of a large plan's time re-examining them. A larger first threshold
    keeps it for the cycles it exists for; freezing keeps it off what the app loaded once.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
