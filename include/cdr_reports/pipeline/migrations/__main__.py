import sys

from cdr_reports.pipeline.migrations import main

sys.exit(main())
