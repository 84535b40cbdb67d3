"""Training: TRL SFTTrainer settings, checkpoint resume, and the multi-node launcher."""
