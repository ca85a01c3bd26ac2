"""``python -m lstm_jax ...`` = ``lstm-jax ...``."""

import sys

from .cli import main

sys.exit(main())
