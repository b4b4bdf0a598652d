"""`python -m wsmigrate`: the `wsmigrate` command line."""

from wsmigrate.bridge.ops.cli import main

raise SystemExit(main())
