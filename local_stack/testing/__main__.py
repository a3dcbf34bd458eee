"""``python -m local_stack.testing fake-api [--latency-ms 20] [--stage prod]``: the fake management API
alone, every id live but ``gone-*``; it prints its ready line and stops when its standard input closes."""

import sys

from .management_api import main

if sys.argv[1:2] != ["fake-api"]:
    sys.exit("usage: python -m local_stack.testing fake-api [--latency-ms MS] [--stage STAGE]")
main(sys.argv[2:])
