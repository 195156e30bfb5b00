import sys

from prompt_server.setup.command import main

sys.exit(main())
