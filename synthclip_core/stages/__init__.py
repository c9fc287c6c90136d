"""The pipeline's stages, one module each, named as the stage is; each ends with its ``STAGE``
definition (``stage.Stage``), and ``synthclip_core.pipeline`` lists them in order. Shared pieces:
``stage`` (what a stage is), ``common`` (lineage, reading inputs), ``partitions`` (stages made on
actor pools), ``status`` (what a run holds). Skipping finished work is decided by the store only.
"""
