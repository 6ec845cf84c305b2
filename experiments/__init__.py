"""Experiment runners reproducing the LoRA paper's tables."""
