"""``python -m deploy.cli``: the command line without the console script's signal handlers."""

import sys

from deploy.cli.main import main

sys.exit(main())
