"""The doctor: preflight findings for a run (`rules`: pure checks; `examine`: the facts, one measured step)."""
