"""SynthCLIP core: the domain logic of the platform, free of any orchestration.

Importing this package pulls in no model library (torch, transformers, diffusers, open_clip,
vllm): backends import them lazily, so a Ray actor running in another environment (the vLLM
one) can import the core cheaply.
"""

__version__ = "0.1.0"
