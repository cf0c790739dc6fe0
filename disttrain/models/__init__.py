"""Complete models built from `disttrain.nn` (config jobs name them through training/models.py)."""
from .gpt import GPT, Block, CausalSelfAttention, MLP

__all__ = ["GPT", "Block", "CausalSelfAttention", "MLP"]
