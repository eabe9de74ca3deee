"""`make run` and `make chat` as a person uses them: `taskpilot dev`, then `taskpilot chat`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from taskpilot.runtime.servers import free_port, wait_until

SERVICES = ("ingest", "conversation", "inference", "knowledge", "tools", "analytics")


def taskpilot(*args: str) -> list[str]:
    return [sys.executable, "-m", "taskpilot.cli", *args]


def test_dev_runner_answers_the_chat_and_stops_cleanly(
    fresh_database_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database_url,
        "TASKPILOT_DATA_DIR": str(data),
        "TASKPILOT_DEV_NATS_PORT": str(free_port()),
        "TASKPILOT_DEV_NATS_MONITOR_PORT": str(free_port()),
        "TASKPILOT_DEV_SANDBOX_PORT": str(free_port()),
        **{f"TASKPILOT_{s.upper()}_HTTP_PORT": str(free_port()) for s in SERVICES},
    }
    env.pop("NATS_URL", None)  # the runner starts its own nats-server from the wheel
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(taskpilot("dev"), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (data / "dev.json").exists(), 240, "taskpilot dev")
        urls = json.loads((data / "dev.json").read_text())
        assert urls["ingest"].endswith(env["TASKPILOT_INGEST_HTTP_PORT"])
        chat = subprocess.run(
            taskpilot("chat", "--lead", "34600000001", "--message", "What are your opening hours?"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "bot> We're open Monday to Friday" in chat.stdout, chat.stdout + chat.stderr
        assert "[L1 · faq · cites: What are your opening hours?]" in chat.stdout
    finally:
        dev.send_signal(signal.SIGTERM)
        code = dev.wait(timeout=30)
        log.close()
    output = (tmp_path / "dev.log").read_text()
    assert code == 0, output[-3000:]
    assert "TaskPilot is running" in output
    monitor = f"http://127.0.0.1:{env['TASKPILOT_DEV_NATS_MONITOR_PORT']}/healthz"
    with pytest.raises(OSError):  # the nats-server it started was ended with it
        urllib.request.urlopen(monitor, timeout=1)
