import sys

from recgoat_jax.cli import main

sys.exit(main())
