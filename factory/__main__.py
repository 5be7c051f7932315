"""`python -m factory ...` is `updraft factory ...`."""

import sys

from updraft.cli import main

sys.exit(main(["factory", *sys.argv[1:]]))
