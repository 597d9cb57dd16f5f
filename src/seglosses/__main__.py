"""``python -m seglosses``: the same command line as the ``seglosses`` console script."""
import sys

from seglosses.cli import main

if __name__ == "__main__":
    sys.exit(main())
