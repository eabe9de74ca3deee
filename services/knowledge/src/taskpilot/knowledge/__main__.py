"""``python -m taskpilot.knowledge``: run knowledge as its own process."""

from taskpilot.knowledge.app import create
from taskpilot.knowledge.settings import KnowledgeSettings
from taskpilot.runtime.host import run, serve


async def main() -> None:
    await serve([await create(KnowledgeSettings())])


if __name__ == "__main__":
    run(main())
