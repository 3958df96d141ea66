"""`python -m cmproxy.emulator serve …`."""

import sys

from cmproxy.emulator.serve import main

sys.exit(main())
