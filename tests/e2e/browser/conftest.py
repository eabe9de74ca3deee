"""Fixtures of the browser tests: Chromium (installed when missing, where possible) and the
built dashboard."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "web"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; apt-get installs it when missing (as root), else the tests skip."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "chromium"],
        ):
            if subprocess.run(command, env=env, capture_output=True, timeout=600).returncode:
                break
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"Chromium is not at {CHROMIUM} and could not be installed "
            "(as root: apt-get install chromium; or set CHROMIUM to a Chromium binary)"
        )
    return CHROMIUM


def npm(*args: str) -> None:
    done = subprocess.run(
        ["npm", *args], cwd=WEB, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"npm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def built_dashboard() -> Path:
    """web/node_modules and web/dist, (re)made only when out of date."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("Node.js 20+ with npm is needed to build and drive the dashboard")
    # Another test run (or `make web`) may be building at the same time.
    with open(WEB / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        installed = WEB / "node_modules" / ".package-lock.json"
        locked = (WEB / "package-lock.json").stat().st_mtime
        if not installed.exists() or installed.stat().st_mtime < locked:
            npm("ci", "--no-audit", "--no-fund")
        index = WEB / "dist" / "index.html"
        sources = [p for p in (WEB / "src").rglob("*") if p.is_file()] + [WEB / "index.html"]
        if not index.exists() or max(p.stat().st_mtime for p in sources) > index.stat().st_mtime:
            npm("run", "build")
    return index.parent
