"""The pipeline's stages over a run's store, each independent of how it is orchestrated.

Whole-run steps (concepts, balance, export, train, eval) run where they are called; model stages
(captions, images) plan their pending partitions here and process them in Ray actors
(``synthclip_core.actors``). Skipping finished work is decided by commit records only.
"""
