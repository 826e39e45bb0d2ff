"""`python -m cdr_reports_dev.demo ...`: the demo's command line (cli.py)."""

import sys

from cdr_reports_dev.demo.cli import main

sys.exit(main())
