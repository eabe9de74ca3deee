from taskpilot.cli.main import main

main()
