import sys

from pimwatch.cli import main

sys.exit(main())
