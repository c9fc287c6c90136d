"""SynthCLIP core: the domain logic of the platform, free of any orchestration.

The face for Python (a notebook, a script; docs/python.md)::

    import synthclip_core as sc

    run = sc.open_run("configs/offline.yaml", root="runs")   # or sc.load_run(RUN_ID, root="runs")
    sc.run_all(run)                                          # or sc.run_stage(run, "captions")
    sc.read_table(run, "images")                             # a stage's rows as one pyarrow table
    sc.to_dataset(run, "images")                             # ... as a Hugging Face dataset
    sc.plan("configs/synthci-30m.yaml", bank_size=500_000)   # what a run would cost

Importing this package pulls in no model library (torch, transformers, diffusers, open_clip,
vllm), nor Ray or the face's own modules: the names above load on first use, so a Ray actor running
in another environment (the vLLM one) can import the core cheaply.
"""

from .version import __version__ as __version__

__all__ = ["load_config", "open_run", "load_run", "run_stage", "run_all", "plan", "read_table", "to_dataset"]


def __getattr__(name: str):
    if name in __all__:
        from .runs import api

        return getattr(api, name)
    raise AttributeError(f"module 'synthclip_core' has no attribute {name!r}")
