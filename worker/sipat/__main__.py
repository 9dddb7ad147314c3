"""python -m worker.sipat ..."""

import sys

from .cli import main

sys.exit(main())
