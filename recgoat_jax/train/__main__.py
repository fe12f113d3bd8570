import sys

from recgoat_jax.train.cli import main

sys.exit(main())
