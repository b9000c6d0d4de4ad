"""``python -m szal``: the same command as ``szal``."""

from szal.cli import main

raise SystemExit(main())
