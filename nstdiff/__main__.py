"""`python -m nstdiff …` is the `nstdiff` command."""
import sys

from nstdiff.commands import main

if __name__ == "__main__":  # not when a spawned worker process imports it as its parent's main module
    sys.exit(main())
