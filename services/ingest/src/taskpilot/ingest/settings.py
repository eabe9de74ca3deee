from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from taskpilot.runtime.settings import CommonSettings

_S3_SCHEMES = ("s3", "s3a", "https", "http")  # what obstore's S3Store.from_url parses


class IngestSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPILOT_INGEST_", extra="ignore")

    http_port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = 3 * 1024 * 1024
    graph_api_base: str = "http://127.0.0.1:8099"
    """Meta's Graph API (https://graph.facebook.com) or the sandbox stand-in."""
    graph_api_version: str = "v21.0"
    graph_timeout_s: float = 10.0
    send_rate_per_number: float = 80.0
    send_max_attempts: int = 8
    retry_scale: float = 1.0
    """Multiplies every retry delay (Meta's 4^X and media's included); below 1 only to speed
    up tests."""
    media_store_url: str = ""
    """Where inbound media is kept: empty for ``<TASKPILOT_DATA_DIR>/media``, ``file:///dir``,
    or ``s3://bucket/prefix`` (endpoint and credentials from ``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``)."""
    media_store_allow_http: bool = False
    """Allow a plain-HTTP S3 endpoint (a store on the same host or network only)."""
    media_max_bytes: int = 16 * 1024 * 1024
    """Largest media kept, whatever Meta allows for its kind (documents go up to 100 MB)."""
    media_max_attempts: int = 5
    media_consumer: bool = True
    """Run the ``ingest-media`` consumer in this process. It reads every inbound message (a
    quarter of the CPU of a webhook): at high webhook rates run it in a deployment of its own
    and set this to false where the webhooks are served."""

    @field_validator("media_store_url")
    @classmethod
    def _a_store_we_can_open(cls, url: str) -> str:
        if not url:
            return url
        parts = urlsplit(url)
        if parts.scheme == "file" and url.startswith("file:///"):
            return url
        if parts.scheme in _S3_SCHEMES and parts.netloc:
            return url
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no password
        raise ValueError(
            f"{shown!r} is neither file:///absolute/dir nor an S3 address (s3://bucket/prefix, "
            "or the https:// URL of a bucket); leave it empty for <TASKPILOT_DATA_DIR>/media"
        )

    def media_store(self) -> str:
        return self.media_store_url or f"file://{(self.data_dir / 'media').resolve()}"
