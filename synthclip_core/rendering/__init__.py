"""Rendering: text-to-image backends (diffusers, plug-ins), model-family presets and the best-of-k scorer."""
