"""A loralib-compatible LoRA layer library."""
