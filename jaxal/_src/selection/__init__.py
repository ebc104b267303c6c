"""Batch selection, one module per public concept of :mod:`jaxal.selection`.

``top_k`` and ``random`` select from scores or uniformly; ``k_center`` is
k-center greedy (Coreset); ``kmeans_pp`` is k-means++ seeding, exact or by
AFK-MC² (``afk_mc2``); ``kmeans`` is k-means clustering and k-means sampling;
``omp`` is non-negative orthogonal matching pursuit (GradMatch's solver);
``bait`` is BAIT's greedy forward-backward selection on the Fisher trace objective.
Every selector returns ``[k]`` int32 indices into the pool: unique, in range,
never an already-labeled point.
"""
