"""``python -m charseq`` is the ``charseq`` command."""

from charseq.cli import main

main()
