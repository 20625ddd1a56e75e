"""`python -m distillax.train`: train or resume from the command line (`distillax.cli.main`).

The library's `train` is the function `distillax.train` (`distillax.run.train`); this module
exists for `-m`, and is not imported by the library.
"""

import sys

if __name__ == "__main__":
    # Join a multi-process program before anything starts the JAX backend: the imports of
    # the command line do (gymnax creates arrays when imported).
    from distillax.parallel import initialize_from_argv

    initialize_from_argv(sys.argv[1:])
    from distillax.cli import main

    sys.exit(main())
