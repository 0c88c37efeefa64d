"""GGUF files (llama.cpp's format): reading one as lmtrain's model, exporting one."""
