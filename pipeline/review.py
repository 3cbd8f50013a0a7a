"""`python -m pipeline.review OUT`, the earlier name of `python -m reports.review OUT` (rebuild the
review pages), kept so that existing scripts keep working."""

import sys

from reports.review import main

if __name__ == "__main__":
    sys.exit(main())
