"""`python -m minibert`: the same as the `minibert` command."""

import sys

from minibert.book.cli import main

sys.exit(main())
