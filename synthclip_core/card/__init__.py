"""The dataset card: what a run made, measured (diversity, alignment, duplicates, the tail) and
written as a Hugging Face dataset card. Pure functions; the ``card`` stage runs them."""
