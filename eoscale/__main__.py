"""``python -m eoscale`` runs the command line."""

from eoscale.cli.main import main

if __name__ == "__main__":
    main()
