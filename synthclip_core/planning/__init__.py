"""Planning: what a run will cost before it starts (estimates, sizing by recorded rates) and whether a machine can run it (doctor)."""
