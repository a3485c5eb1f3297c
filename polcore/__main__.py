import sys

from polcore.cli import main

sys.exit(main())
