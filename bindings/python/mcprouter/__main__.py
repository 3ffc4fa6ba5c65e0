"""``python -m mcprouter ARGS``: the same as the ``mcprouter`` console script."""

from mcprouter._cli import main

main()
