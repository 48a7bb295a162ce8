"""``python -m mlguard`` is ``ml-guard``."""
import sys

from .cli import main

sys.exit(main())
