"""CLIP training on the run's webdataset shards with Ray Train (TorchTrainer, DDP)."""
