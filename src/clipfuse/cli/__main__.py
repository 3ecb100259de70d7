import sys

from clipfuse.cli import main

sys.exit(main())
