"""``python -m nuvom``: the same command line as the ``nuvom`` script."""

from nuvom.cli.main import main

if __name__ == "__main__":
    main()
