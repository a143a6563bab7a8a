"""`python -m benchmarks [--quick] [--only ...]`: every benchmark, one table (run_all.py)."""

import sys

from benchmarks.run_all import main

sys.exit(main())
