"""Captioning: prompt templates, caption backends (vLLM, transformers, plug-ins), the writer and its clean-up."""
