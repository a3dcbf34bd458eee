"""``python -m local_stack.testing fake-api [--latency-ms 20] [--stage prod]``: the fake management API
alone, every id live but ``gone-*``; ``python -m local_stack.testing moto``: moto's server alone. Each
prints its ready line and stops when its standard input closes."""

import sys

from . import management_api, moto

COMMANDS = {"fake-api": management_api.main, "moto": moto.main}
USAGE = "usage: python -m local_stack.testing fake-api [--latency-ms MS] [--stage STAGE] | moto"

if sys.argv[1:2] == [] or sys.argv[1] not in COMMANDS:
    sys.exit(USAGE)
COMMANDS[sys.argv[1]](sys.argv[2:])
