"""``python -m taskpilot.tools``: run tools as its own process."""

from taskpilot.runtime.host import run, serve
from taskpilot.tools.app import create
from taskpilot.tools.settings import ToolsSettings


async def main() -> None:
    await serve([await create(ToolsSettings())])


if __name__ == "__main__":
    run(main())
