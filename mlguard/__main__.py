"""``python -m mlguard`` is ``ml-guard``."""
from .cli import main

main(prog_name="ml-guard")
