"""`python -m bench`: the same as `python -m bench.speed` (`make bench`)."""

import sys

from bench.speed import get_args_parser, main

sys.exit(main(get_args_parser().parse_args()))
