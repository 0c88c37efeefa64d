"""GPT-2 style decoder (gpt.py), its config (config.py), sizing and the Hugging Face mapping."""
