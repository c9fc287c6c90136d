"""Benchmarks: every figure is a ratio against a baseline measured in the same process."""

import os


def made_dir(path: str) -> str:
    """An argparse type for ``--root DIR``: the directory, made (with its parents) if it is not there."""
    os.makedirs(path, exist_ok=True)
    return os.path.abspath(path)
