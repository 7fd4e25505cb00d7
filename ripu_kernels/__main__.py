"""``python -m ripu_kernels``: the ``ripu`` command line."""
import sys

from .cli import main

sys.exit(main())
