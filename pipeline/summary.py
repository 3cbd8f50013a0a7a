"""`python -m pipeline.summary OUT`, the earlier name of `python -m reports.merge OUT` (merge a
sharded folder run's summaries), kept so that existing job scripts keep working."""

import sys

from reports.merge import main

if __name__ == "__main__":
    sys.exit(main())
