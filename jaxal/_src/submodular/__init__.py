"""Submodular set functions over similarity kernels, and their greedy maximisers.

``kernels``: similarity kernels (dense, sparse k-nearest-neighbour, row-sharded)
and their row / column / diagonal accessors. ``functions``: set functions as
values (:class:`~jaxal._src.submodular.functions.SetFunction`, a NamedTuple of
pure functions) and one factory per function. ``maximizers``: greedy, lazy and
stochastic greedy over any ``SetFunction``.
"""
