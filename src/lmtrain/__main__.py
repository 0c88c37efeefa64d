"""`python -m lmtrain` runs the command-line interface."""

from lmtrain.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
