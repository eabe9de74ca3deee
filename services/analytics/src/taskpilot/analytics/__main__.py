"""``python -m taskpilot.analytics``: run analytics as its own process."""

from taskpilot.analytics.app import create
from taskpilot.analytics.settings import AnalyticsSettings
from taskpilot.runtime.host import run, serve


async def main() -> None:
    await serve([await create(AnalyticsSettings())])


if __name__ == "__main__":
    run(main())
