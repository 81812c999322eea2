"""`python -m sink [--show-config] [--migrate-only]`."""

import sys

from sink.app import main

sys.exit(main())
