import sys

from style_presets.cli import main

sys.exit(main())
