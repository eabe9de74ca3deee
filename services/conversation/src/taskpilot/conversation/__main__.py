"""``python -m taskpilot.conversation``: run conversation as its own process."""

from taskpilot.conversation.app import create
from taskpilot.conversation.settings import ConversationSettings
from taskpilot.runtime.host import run, serve


async def main() -> None:
    await serve([await create(ConversationSettings())])


if __name__ == "__main__":
    run(main())
