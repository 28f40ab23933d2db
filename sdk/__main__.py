import sys

from agentwatch._cli import main

sys.exit(main())
