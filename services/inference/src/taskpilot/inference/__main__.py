"""``python -m taskpilot.inference``: run inference as its own process."""

from taskpilot.inference.app import create
from taskpilot.inference.settings import InferenceSettings
from taskpilot.runtime.host import run, serve


async def main() -> None:
    await serve([await create(InferenceSettings())])


if __name__ == "__main__":
    run(main())
