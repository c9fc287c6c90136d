"""Studies over many trainings: the scaling ladder, its fit, and what models get wrong."""
