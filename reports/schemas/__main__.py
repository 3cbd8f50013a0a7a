"""`python -m reports.schemas [report|summary]`: the key tables of docs/REPORTS.md."""

import sys

from reports.schemas import SCHEMAS, markdown_table

for name in sys.argv[1:] or list(SCHEMAS):
    print(markdown_table(name))
