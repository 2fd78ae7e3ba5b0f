"""``mcp-gemma model …`` and ``mcp-gemma ask`` through Typer's runner (real model for ``ask``)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcp_gemma.cli import app
from mcp_gemma.llm.models import PACKAGED_MODEL

runner = CliRunner()


@pytest.fixture(autouse=True)
def models_under_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests pass --data-dir and expect models under <data-dir>/models, not the session cache."""
    monkeypatch.delenv("MCP_GEMMA_GEMMA__CACHE_DIR", raising=False)


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let huggingface_hub try the network (the test session runs offline)."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


class _Gated(BaseHTTPRequestHandler):
    def _refuse(self) -> None:
        self.send_response(403)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", "Access to model google/gemma-x is restricted.")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "Access to model google/gemma-x is restricted."}')

    do_GET = do_HEAD = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gated_hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gated)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_list_and_info_on_an_empty_data_dir(tmp_path: Path) -> None:
    listed = runner.invoke(app, ["model", "list", "--json", "--data-dir", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["models"] == []
    human = runner.invoke(app, ["model", "list", "--data-dir", str(tmp_path)])
    assert human.stdout == f"models in {tmp_path / 'models'}: 0\n"
    shown = runner.invoke(app, ["model", "info", "--json", "--data-dir", str(tmp_path)])
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert (report["model"], report["kind"], report["built"]) == (PACKAGED_MODEL, "packaged", False)
    lines = runner.invoke(app, ["model", "info", "--data-dir", str(tmp_path)]).stdout.splitlines()
    assert lines[:2] == [f"model: {PACKAGED_MODEL}", "kind: packaged"]


def test_info_of_an_unknown_model_fails_clearly(tmp_path: Path) -> None:
    result = runner.invoke(app, ["model", "info", "-m", "nobody/nothing", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "mcp-gemma model download nobody/nothing" in result.stderr


@pytest.mark.parametrize("bad", ["../evil", "a/../../b", "/etc/passwd", "x/y/z"])
def test_download_refuses_paths_outside_the_models_dir(tmp_path: Path, bad: str) -> None:
    result = runner.invoke(app, ["model", "download", bad, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a Hub model id" in result.stderr
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").rglob("*"))


@pytest.mark.usefixtures("online")
def test_download_from_an_unreachable_hub_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    result = runner.invoke(app, ["model", "download", "google/gemma-3-1b-it", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert (
        "cannot reach the Hub" in result.stderr or "download of google/gemma-3-1b-it failed" in result.stderr
    )


@pytest.mark.usefixtures("online")
def test_download_of_a_gated_model_explains_the_licence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gated_hub: str
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", gated_hub)
    result = runner.invoke(app, ["model", "download", "google/gemma-x", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "gated" in result.stderr
    assert "licence" in result.stderr
    assert "HF_TOKEN" in result.stderr


def test_download_while_offline_says_how_to_go_online(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["model", "download", "google/gemma-3-1b-it", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "HF_HUB_OFFLINE" in result.stderr


def test_remove_deletes_only_stored_files(tmp_path: Path, packaged_gguf: Path) -> None:
    hub = tmp_path / "models" / "hub" / "org--model"
    hub.mkdir(parents=True)
    (hub / "config.json").write_text("{}", encoding="utf-8")
    result = runner.invoke(app, ["model", "remove", "org/model", "--yes", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert not hub.exists()
    again = runner.invoke(app, ["model", "remove", "org/model", "--yes", "--data-dir", str(tmp_path)])
    assert again.exit_code == 1
    assert "nothing stored" in again.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}", encoding="utf-8")
    (mine / "model.safetensors").write_bytes(b"")
    refused = runner.invoke(app, ["model", "remove", str(mine), "--yes", "--data-dir", str(tmp_path)])
    assert refused.exit_code == 1
    assert mine.exists()


@pytest.mark.model
@pytest.mark.usefixtures("gemma")  # builds the session's model cache
def test_ask_streams_the_answer(tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_GEMMA_GEMMA__CACHE_DIR", str(models_dir))
    result = runner.invoke(
        app, ["ask", "What is the capital of France?", "--max-new-tokens", "6", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    assert "gemma3-270m-gguf: " in result.stderr
    assert "tokens in" in result.stderr


def test_info_reads_the_shipped_gguf_header(tmp_path: Path, packaged_gguf: Path) -> None:
    """The shipped Q4_K_M file: its tensor types, and the base model's few-shot completion prompt."""
    shown = runner.invoke(
        app, ["model", "info", "--json", "-m", str(packaged_gguf), "--data-dir", str(tmp_path)]
    )
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["built"] is False
    assert report["gguf_file"] == {
        "architecture": "gemma3",
        "name": "Gemma 3 270m",
        "size_label": "270M",
        "tensor_types": {"F32": 109, "Q4_K": 27, "Q5_0": 81, "Q6_K": 9, "Q8_0": 10},
        "chat_template": False,
    }
    assert (report["prompt_style"], report["chat_template"]) == ("completion", None)
    assert report["prompt_example"].endswith("\n\nQuestion: What is the capital of France?\nAnswer:")


def test_load_progress_draws_a_bar_on_a_terminal_and_lines_elsewhere() -> None:
    import io

    import anyio
    from rich.console import Console

    from mcp_gemma.cli.model import LoadProgress

    messages = ["reading GGUF metadata", "dequantising: 0/40 MiB", "dequantising: 20/40 MiB"]
    messages += ["dequantising: 40/40 MiB", "building config and tokenizer"]

    async def play(shown: LoadProgress) -> None:
        with shown:
            for message in messages:
                await shown(message)

    piped = io.StringIO()
    anyio.run(play, LoadProgress(Console(file=piped, force_terminal=False, width=100)))
    assert piped.getvalue().splitlines() == messages

    terminal = io.StringIO()
    anyio.run(play, LoadProgress(Console(file=terminal, force_terminal=True, width=100)))
    drawn = terminal.getvalue()
    assert "reading GGUF metadata" in drawn and "building config and tokenizer" in drawn
    assert "40/40 MiB" in drawn and "100%" in drawn and "━" in drawn  # the bar, complete
    assert "dequantising: 20/40 MiB" not in drawn  # counted messages became the bar
