"""Building blocks of the models: linear (float, int8, int4), RMSNorm, RoPE, attention over a slot KV cache."""
