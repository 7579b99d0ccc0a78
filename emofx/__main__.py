import sys

from emofx.cli import main

sys.exit(main())
