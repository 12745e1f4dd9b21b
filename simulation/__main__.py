"""``python -m simulation``: the closed-loop replay (``--fast``: the library alone, in minutes)."""

from simulation.closed_loop import main, progress_logging

progress_logging()
raise SystemExit(main())
