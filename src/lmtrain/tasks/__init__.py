"""Benchmark tasks (the CORE suite and a user's own): the table, the files, the rules, batched scoring."""
