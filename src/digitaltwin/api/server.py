"""The uvicorn server of ``digitaltwin serve``: uvicorn's, with the start-up heap kept out of the cyclic GC.

An API process holds about 350,000 objects once started (pandas, scikit-learn, LightGBM,
SQLAlchemy and FastAPI's modules, the app's routes and models), and they live as long as the
process. CPython's cyclic collector walks every one of them in each full (generation 2)
collection: about 140 ms of one core on the 2-core benchmark machine, and under load a full
collection came every second or so (7 in 8 s at 1,500 requests/s, each pausing every request
the process held: that was the p99 of 120–200 ms in bench/serving_postgres.py). Once start-up
is over, the heap is collected once and frozen (:func:`gc.freeze`, Python 3.7+): the collector
no longer looks at those objects, so a full collection walks only what requests made since.

Frozen objects are still freed when their reference count drops to zero; only reference cycles
among them are never collected, which is why the heap is collected just before it is frozen.
The freeze happens in the serving process only, after the app's lifespan start-up; tests that
start apps in their own process are not affected.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time

import uvicorn

log = logging.getLogger(__name__)


def freeze_heap() -> int:
    """Collect garbage, then move every object alive into the collector's permanent generation.

    Returns the number of objects frozen (:func:`gc.get_freeze_count`).
    """
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("API process %d froze %d start-up objects in %.0f ms", os.getpid(), frozen, (time.perf_counter() - started) * 1e3)
    return frozen


class ApiServer(uvicorn.Server):
    """``uvicorn.Server`` that freezes the heap once its lifespan start-up is done (see the module doc)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            freeze_heap()
