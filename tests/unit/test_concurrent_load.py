"""Two embedders loading at the same moment in one process both succeed (no lazy-import race)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_two_embedders_load_concurrently_in_a_fresh_process() -> None:
    # A fresh interpreter, so transformers is imported for the first time by the two threads.
    code = textwrap.dedent(
        """
        import os, threading
        os.environ["HF_HUB_OFFLINE"] = "1"
        from mcp_gemma.embeddings.minilm import MiniLMEmbedder
        results, errors = [], []
        def load():
            try:
                results.append(MiniLMEmbedder().embed(["hello world"]).shape)
            except Exception as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=load) for _ in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert not errors, errors
        assert results == [(1, 384), (1, 384)], results
        print("ok")
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("ok")
