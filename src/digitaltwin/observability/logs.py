"""Log files in ``LOG_DIR``, rotated at midnight (UTC): ``digital_twin.log``, ``access.log`` and ``error.log``.

Request lines come from uvicorn's access logger (and ``digitaltwin.access``).
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

ACCESS_LOGGER = "digitaltwin.access"
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: Days of rotated files kept.
RETENTION_DAYS = 14


def _file_handler(path: Path, level: int) -> logging.Handler:
    handler = logging.handlers.TimedRotatingFileHandler(path, when="midnight", backupCount=RETENTION_DAYS, utc=True, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(_FORMAT))
    return handler


def configure_logging(log_dir: Path, *, level: str = "INFO") -> None:
    """Send application logs to ``digital_twin.log``, errors also to ``error.log``, requests to ``access.log``.

    Idempotent: handlers installed by an earlier call are replaced.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("digitaltwin")
    for handler in list(root.handlers):
        if getattr(handler, "_digitaltwin", False):
            root.removeHandler(handler)
            handler.close()
    access_handler = _file_handler(log_dir / "access.log", logging.INFO)
    for name in (ACCESS_LOGGER, "uvicorn.access"):
        access = logging.getLogger(name)
        for handler in list(access.handlers):
            if getattr(handler, "_digitaltwin", False):
                access.removeHandler(handler)
                handler.close()
        access.setLevel(logging.INFO)
        access.addHandler(access_handler)
    access_handler._digitaltwin = True  # type: ignore[attr-defined]
    root.setLevel(level)
    for handler in (_file_handler(log_dir / "digital_twin.log", logging.DEBUG), _file_handler(log_dir / "error.log", logging.ERROR)):
        handler._digitaltwin = True  # type: ignore[attr-defined]
        root.addHandler(handler)
