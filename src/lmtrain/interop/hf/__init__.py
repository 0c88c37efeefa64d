"""transformers model folders: reading one as lmtrain's model, exporting one."""
