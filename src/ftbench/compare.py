"""`python -m ftbench.compare`, as users call it: ftbench.report.compare."""

import sys

from ftbench.report.compare import main

if __name__ == "__main__":
    sys.exit(main())
