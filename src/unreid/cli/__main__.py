import sys

from unreid.cli import main

sys.exit(main())
