"""`python -m frontend ...` is `updraft frontend ...`."""

import sys

from updraft.cli import main

sys.exit(main(["frontend", *sys.argv[1:]]))
