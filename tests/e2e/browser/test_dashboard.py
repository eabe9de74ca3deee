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
from pathlib import Path

import pytest

from taskpilot.analytics.auth import LocalIssuer
from tests.e2e.browser.conftest import ROOT, WEB
from tests.e2e.conftest import System

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_onboard_chat_watch_live_take_over(
    system: System, built_dashboard: Path, chromium: str
) -> None:
    browser = chromium
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
