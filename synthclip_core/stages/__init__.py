"""Stages: one module each, named as the stage is, ending with its ``STAGE`` (``stage.Stage``);
``executor`` keeps the books around every stage's work, ``common`` holds what several share."""
