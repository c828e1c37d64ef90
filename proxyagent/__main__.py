import sys

from proxyagent.cli import main

sys.exit(main())
