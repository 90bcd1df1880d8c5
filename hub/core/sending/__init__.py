"""The send pipeline: sends rows, checks, the per-number governor, Graph calls, retries."""
