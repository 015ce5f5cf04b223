"""``python -m sdekit``: the ``sdekit`` command line."""

from .cli import main

raise SystemExit(main())
