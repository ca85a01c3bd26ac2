"""The ``lstm-jax`` command line (also ``python -m lstm_jax``): one module per subcommand, one error policy.

Subcommands (each module defines ``HELP``, ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``):

* ``verify`` (:mod:`lstm_jax.cli.verify`): every claim of the article checked in float64, a verdict table;
* ``diagnose`` (:mod:`lstm_jax.cli.diagnose`): a user's model file, report + JSON + figures;
* ``flow`` (:mod:`lstm_jax.cli.flow`): gradient flow of the article's model family, JSON + figures;
* ``train`` (:mod:`lstm_jax.cli.train`): one training run on the 1997 adding problem (or temporal order);
* ``sweep`` (:mod:`lstm_jax.cli.sweep`): the resumable long-lag sweep and its report (``docs/long-lag/``);
* ``bench`` (:mod:`lstm_jax.cli.bench`): the benchmark suite of a source checkout.

Error policy (:func:`main`, docs/guide/errors.md): every subcommand validates its options and files before any
work; ``ValueError``/``TypeError`` (bad option, file of the wrong kind, format, size or content) → one line on
stderr, exit 2; ``OSError`` (a file that cannot be read or written) → exit 3; a failed check → 1; Ctrl-C / SIGTERM
→ staged outputs removed or completed, exit 130 / 143.
"""

from ._main import EXIT_CHECK_FAILED, EXIT_IO, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE, build_parser, main

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_CHECK_FAILED", "EXIT_USAGE", "EXIT_IO", "EXIT_SIGINT",
           "EXIT_SIGTERM"]
