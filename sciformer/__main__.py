"""``python -m sciformer`` (what ``torchrun -m sciformer`` runs)."""

from sciformer.cli import main

raise SystemExit(main())
