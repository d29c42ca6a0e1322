"""Owner-only files and folders for what the service writes locally.

The embedded SQLite database holds password hashes, API key hashes and MFA secrets, and the
log files hold user names, client addresses and request details, so they are created readable
by the service's own user only (files 0600, folders 0700) whatever the process umask is.
Modes apply when a file or folder is created; existing ones are left as the operator set them.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Mode of the files the service creates (database, logs).
PRIVATE_FILE_MODE = 0o600
#: Mode of the folders the service creates (DATA_DIR, LOG_DIR).
PRIVATE_DIR_MODE = 0o700


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with :data:`PRIVATE_FILE_MODE` when it does not exist yet (no-op otherwise).

    ``O_EXCL`` makes the check and the creation one step, so a file created meanwhile by
    another process is left alone. The umask can only remove bits, never add them.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)
