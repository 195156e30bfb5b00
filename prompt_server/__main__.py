"""`python -m prompt_server ...`: kept for scripts written before the `newspicgen` command.

An entry point, imported by no module, so it may call the core CLI above this
layer (the import-linter contract in pyproject.toml ignores this one module).
"""
import sys

from newspicgen.cli import main

sys.exit(main())
