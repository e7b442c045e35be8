"""`python -m unreid ...` (and `torchrun -m unreid ...`): the `unreid` command."""

import sys

from unreid.cli import main

sys.exit(main())
