import sys

from newspicgen.cli import main

sys.exit(main())
