"""``riskpipe analyze`` and ``riskpipe bench analyze`` (being written)."""
