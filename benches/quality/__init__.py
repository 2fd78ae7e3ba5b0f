"""Retrieval-quality benchmark data: stdlib corpora with labelled queries, and a conversational memory set."""
