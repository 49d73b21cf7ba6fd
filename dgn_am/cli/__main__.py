import sys

from dgn_am.cli import main

sys.exit(main())
