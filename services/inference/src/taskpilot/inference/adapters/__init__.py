"""Inference's I/O: the LLM provider port and its LiteLLM adapter, the semantic cache's
store, and the spend ledger."""
