"""``python -m taskpilot.ingest``: run ingest as its own process."""

from taskpilot.ingest.app import create
from taskpilot.ingest.settings import IngestSettings
from taskpilot.runtime.host import run, serve


async def main() -> None:
    await serve([await create(IngestSettings())])


if __name__ == "__main__":
    run(main())
