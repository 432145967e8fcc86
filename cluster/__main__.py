"""`python -m cluster` runs the `etcdlite` command line."""

from __future__ import annotations

from cluster.cli import main

if __name__ == "__main__":
    main()
