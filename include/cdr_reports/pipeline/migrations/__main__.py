"""`python -m cdr_reports.pipeline.migrations upgrade|current|check|repair`: the migrations command line."""

import sys

from cdr_reports.pipeline.migrations import main

sys.exit(main())
