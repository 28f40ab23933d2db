import sys

from agentwatch.app._cli import main

sys.exit(main())
