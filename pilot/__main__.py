"""python -m pilot (and the zipapp's entry point)."""

import sys

from pilot.loop import main

if __name__ == "__main__":
    sys.exit(main())
