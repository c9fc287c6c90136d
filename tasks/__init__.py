"""Thin Prefect tasks: one retryable unit of work each, delegating to ``synthclip_core``."""
