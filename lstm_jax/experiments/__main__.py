"""``python -m lstm_jax.experiments ...`` = ``lstm-jax train ...``."""

import sys

from ._command import main

sys.exit(main())
