"""python -m mlipkit.cli (also how torchrun starts training ranks)."""

import sys

from mlipkit.cli import main

sys.exit(main())
