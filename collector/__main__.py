"""`python -m collector`: run the collector service."""

import sys

from collector.app import main

sys.exit(main())
