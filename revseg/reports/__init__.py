"""Reports that present runs: one run's HTML page (:mod:`~revseg.reports.page`) and the index over many runs
(:mod:`~revseg.reports.index`).

They read trajectories and the frames and masks the tools wrote; they are not steps of the
chain, so they live apart from ``tools``. Templates and assets are in ``templates/``.
"""
