"""Experiments: strategies × seeds × rounds → learning curves, tables, plots; resumable.

``config`` holds the configuration and the data it runs on, ``store`` the
output folder and what a checkpoint contains, ``checkpoint`` the atomic,
checksummed file format under it, ``runner`` the runs themselves and
``report`` the summaries, tables and plots. ``jaxal.experiment`` is the
public surface.
"""
