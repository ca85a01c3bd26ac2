"""``python -m lstm_jax verify``."""

import sys

from ._cli import main

sys.exit(main())
