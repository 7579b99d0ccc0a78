import sys

from emofx.cli import console_main

sys.exit(console_main())
