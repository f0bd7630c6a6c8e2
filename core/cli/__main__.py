"""`python -m tunedeck.core.cli`: the console script."""

import sys

from tunedeck.core.cli.main import main

sys.exit(main())
