"""Training loops shared by teacher fine-tuning and distillation: sampling, checkpoints, dev selection."""
