"""Evaluation of open_clip models: datasets, features, metrics, tasks, coverage and reports.

Any open_clip checkpoint can be evaluated (``models.py``), not only this platform's; the run's
own ``eval`` stage uses the same tasks on its held-out synthetic split.
"""
