"""Operations checks run with the real programs: nginx, promtool, amtool, shellcheck, docker-compose.

A missing program skips its test with the reason; with ``DT_REQUIRE_OPS_TOOLS=1`` (set by
``.ci/run``, which installs them from Debian packages) a missing program fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"


def require_tool(name: str, *, package: str) -> str:
    """Absolute path of program ``name``; skips (or fails in CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} not installed (Debian package: {package})"
        if os.environ.get("DT_REQUIRE_OPS_TOOLS") == "1":
            pytest.fail(f"{reason}; required because DT_REQUIRE_OPS_TOOLS=1")
        pytest.skip(reason)
    return path


def run(args: list[str], *, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None, check: bool = True,
        input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run a program, returning its output; on failure (with ``check``) the assertion shows stdout and stderr."""
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
        input=input.decode() if input is not None else None,
    )
    if check:
        assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result
