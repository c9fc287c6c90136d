"""Compute: Ray actor pools and tasks, what they ask of a cluster, and progress from long work."""
