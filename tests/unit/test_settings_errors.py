"""A setting that cannot work stops a service at start with the setting and the reason, not
a traceback: here the media store's address."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from taskpilot.ingest.settings import IngestSettings


@pytest.mark.parametrize("url", ["ftp://host/media", "file://relative/dir", "/var/media", "s3:/b"])
def test_a_media_store_we_cannot_open_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="neither file:///absolute/dir nor s3://"):
        IngestSettings(media_store_url=url)


@pytest.mark.parametrize("url", ["", "file:///var/media", "s3://bucket/prefix"])
def test_the_stores_we_can_open_are_taken(url: str) -> None:
    assert IngestSettings(media_store_url=url).media_store_url == url


def test_the_service_stops_with_the_setting_and_the_reason() -> None:
    env = {**os.environ, "TASKPILOT_INGEST_MEDIA_STORE_URL": "ftp://host/media"}
    done = subprocess.run(
        [sys.executable, "-m", "taskpilot.ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "IngestSettings: media_store_url:" in done.stderr
    assert "'ftp://host/media' is neither" in done.stderr
    assert "Traceback" not in done.stderr
