"""The web dashboard end to end in headless Chromium, against every service as its own process.

Runs ``web/e2e/dashboard.mjs`` (playwright-core driving Debian's chromium): onboarding a
tenant, adding an FAQ, chatting in the sandbox and seeing the reply live in the Command Center
with its cost and source, taking over and replying as a human. Screenshots go to
``test-output/browser`` (or ``$TASKPILOT_TEST_OUTPUT/browser``).

Chromium is installed with apt-get when it is missing (as root); the test is skipped, saying
why, only when that is impossible. It needs Node.js for the build and the driver.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from taskpilot.analytics.auth import LocalIssuer
from tests.e2e.conftest import System

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "web"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

pytestmark = pytest.mark.asyncio(loop_scope="session")


def chromium() -> str:
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
    installed = WEB / "node_modules" / ".package-lock.json"
    if (
        not installed.exists()
        or installed.stat().st_mtime < (WEB / "package-lock.json").stat().st_mtime
    ):
        npm("ci", "--no-audit", "--no-fund")
    index = WEB / "dist" / "index.html"
    sources = [p for p in (WEB / "src").rglob("*") if p.is_file()] + [WEB / "index.html"]
    if not index.exists() or max(p.stat().st_mtime for p in sources) > index.stat().st_mtime:
        npm("run", "build")
    return index.parent


async def test_onboard_chat_watch_live_take_over(system: System, built_dashboard: Path) -> None:
    browser = chromium()
    data_dir = Path(system.processes["analytics"].env["TASKPILOT_DATA_DIR"])
    token = LocalIssuer.in_data_dir(data_dir).issue(
        tenant_id=None, roles=["operator"], subject="e2e-browser", name="Marta"
    )
    out = Path(os.environ.get("TASKPILOT_TEST_OUTPUT", ROOT / "test-output")) / "browser"
    driver = await asyncio.create_subprocess_exec(
        "node",
        "e2e/dashboard.mjs",
        cwd=WEB,
        env={
            **os.environ,
            "TASKPILOT_URL": system.url("analytics"),
            "TASKPILOT_TOKEN": token,
            "OUTPUT_DIR": str(out),
            "CHROMIUM": browser,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(driver.communicate(), 240)
    finally:
        if driver.returncode is None:
            driver.kill()
    assert driver.returncode == 0, f"{output.decode()}\nscreenshots: {out}"
    assert (out / "4-command-center-live-reply.png").exists()
    assert (out / "5-human-reply.png").exists()
