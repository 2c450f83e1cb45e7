"""Observing a run: phase timers (pure), the collective report, trace/plot export,
progress lines and logging. :mod:`.phases` and :mod:`.log` import nothing from hpcproc,
so every layer may use them."""
