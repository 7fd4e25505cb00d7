"""``python -m ripu_kernels``: the ``ripu`` command line (the training driver, ``ripu_kernels.driver``)."""
import sys

from .driver.cli import main

sys.exit(main())
