"""``python -m riskpipe``: the same as the ``riskpipe`` command."""

from riskpipe.cli import main

main()
