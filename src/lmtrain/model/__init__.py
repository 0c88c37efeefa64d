"""The models: the architecture registry (registry.py), the configs (config.py), the protocol every model meets
(base.py), one module per architecture (gpt.py, modern.py), the fused head and loss (head.py), the KV cache, sizing, and
each architecture's transformers adapter (hf_gpt2.py, hf_llama.py, with hf_common.py)."""
