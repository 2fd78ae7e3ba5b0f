"""The local Gemma model: loading, generation, streaming and cancellation (no MCP code)."""

import os

# OpenMP worker threads that spin between parallel regions starve every other process on a shared
# CPU (and llama.cpp or the embedder in this one): measured 3x slower decode per token under load
# with the spinning default. Only effective before torch loads, and the environment still wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
