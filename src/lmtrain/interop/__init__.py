"""Moving models between lmtrain checkpoints and other formats."""
