"""``python -m hpcproc`` is the ``hpcproc`` command."""

from .cli import run

if __name__ == "__main__":
    run()
