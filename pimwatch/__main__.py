import sys

from pimwatch.entry import main

sys.exit(main())
