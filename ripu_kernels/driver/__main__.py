"""``python -m ripu_kernels.driver``: the ``ripu`` command line."""
import sys

from .cli import main

sys.exit(main())
