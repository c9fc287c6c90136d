"""Runs: opening, continuing and forking them, what they pin, the checks before work, status, verify, and the Python face."""
