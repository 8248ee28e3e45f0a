"""`python -m circuitlab.text fetch`: install the corpus (what `make corpus` runs); `path`: print where it is."""

import sys

from .corpus import main

sys.exit(main())
