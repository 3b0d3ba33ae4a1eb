"""`python -m resolverguard` is the same command as `resolverguard`."""

import sys

from resolverguard.cli import main

sys.exit(main())
