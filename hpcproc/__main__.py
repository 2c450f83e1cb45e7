"""``python -m hpcproc`` is the ``hpcproc`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
