"""A setting that cannot work stops a service at start with the setting and the reason, not
a traceback: here the media store's address and the models file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from taskpilot.inference.settings import InferenceSettings
from taskpilot.ingest.settings import IngestSettings
from taskpilot.runtime.testing import python


@pytest.mark.parametrize("url", ["ftp://host/media", "file://relative/dir", "/var/media", "s3:/b"])
def test_a_media_store_we_cannot_open_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="neither file:///absolute/dir nor an S3 address"):
        IngestSettings(media_store_url=url)


def test_the_refusal_does_not_repeat_a_password() -> None:
    with pytest.raises(ValidationError) as refused:
        IngestSettings(media_store_url="ftp://keeper:hunter2@host/media")
    assert refused.value.errors()[0]["msg"].startswith("Value error, 'ftp://host/media' is")
    assert "hunter2" not in refused.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    "url",
    [
        "",
        "file:///var/media",
        "s3://bucket/prefix",
        "s3a://bucket/prefix",
        "https://s3.eu-west-1.amazonaws.com/bucket/prefix",
        "https://account.r2.cloudflarestorage.com/bucket",
    ],
)
def test_the_stores_we_can_open_are_taken(url: str) -> None:
    assert IngestSettings(media_store_url=url).media_store_url == url


def test_the_service_stops_with_the_setting_and_the_reason() -> None:
    done = python(
        "-m", "taskpilot.ingest", env={"TASKPILOT_INGEST_MEDIA_STORE_URL": "ftp://host/media"}
    )
    assert done.returncode == 2
    assert "IngestSettings: media_store_url:" in done.stderr
    assert "'ftp://host/media' is neither" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_validation_error_that_is_not_about_settings_keeps_its_traceback() -> None:
    done = python(
        "-c",
        "from pydantic import TypeAdapter\n"
        "from taskpilot.runtime.host import run\n"
        "async def main():\n"
        "    TypeAdapter(int).validate_python('x')\n"
        "run(main())\n",
    )
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "ValidationError" in done.stderr


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read .*: No such file or directory"),
        ('{"deployments": [', "is not JSON: Expecting value: line 1 column 18"),
        (
            '{"deployments": [{"tier": "L4", "model": "openai/gpt-4o"}]}',
            "models.json: deployments.0.tier: Input should be 'L2' or 'L3'",
        ),
    ],
)
def test_a_models_file_inference_cannot_use_is_refused_with_its_path_and_the_reason(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "models.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValidationError, match=reason) as refused:
        InferenceSettings(models_file=path)
    assert refused.value.errors()[0]["loc"] == ("models_file",)
