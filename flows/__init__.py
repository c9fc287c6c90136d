"""Prefect flows (one per stage, and the end-to-end build) and the ``synthclip`` CLI."""
