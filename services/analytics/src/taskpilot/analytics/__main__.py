"""``python -m taskpilot.analytics``: run analytics as its own process."""

import logging
import os

from taskpilot.analytics.app import create
from taskpilot.analytics.settings import AnalyticsSettings
from taskpilot.runtime.host import run, serve

log = logging.getLogger("taskpilot.analytics")


async def main() -> None:
    settings = AnalyticsSettings()
    app = await create(settings)  # sets up logging
    if settings.nice:
        # Background work yields the cores to the reply path (see the setting).
        os.nice(settings.nice)
        log.info("CPU priority lowered by %d", settings.nice)
    await serve([app])


if __name__ == "__main__":
    run(main())
