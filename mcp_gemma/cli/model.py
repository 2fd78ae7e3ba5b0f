"""``mcp-gemma model list|info|download|load-test|remove`` and ``mcp-gemma ask``.

Model files live under the models directory (``gemma.cache_dir`` or ``<data_dir>/models``);
``download`` is the only command that talks to the network.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from mcp_gemma.cli.common import fail, settings_from_cli
from mcp_gemma.errors import McpGemmaError

model_app = typer.Typer(help="List, inspect, download, test and remove local models.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (models live under it).")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Model: 'gemma3-270m-gguf', a directory or a Hub id.")
]


def _settings(config: Path | None, data_dir: Path | None, model: str | None = None, **gemma: Any) -> Any:

    overrides = {k: v for k, v in gemma.items() if v is not None}
    if model:
        overrides["model"] = model
    return settings_from_cli(config, data_dir=data_dir, gemma=overrides or None)


def _store(settings: Any) -> Any:
    from mcp_gemma.llm.models import ModelStore, models_dir

    return ModelStore(models_dir(settings.gemma, settings.data_dir))


def _fail(exc: Exception, code: int = 1) -> typer.Exit:

    return fail(str(exc), code)


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _print_fields(report: dict[str, Any], indent: str = "") -> None:
    for key, value in report.items():
        if isinstance(value, dict):
            typer.echo(f"{indent}{key}:")
            _print_fields(value, indent + "  ")
        else:
            typer.echo(f"{indent}{key}: {'-' if value is None else value}")


@model_app.command("list")
def list_models(as_json: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Models stored under the models directory, with their size on disk."""
    settings = _settings(config, data_dir)
    store = _store(settings)
    rows = store.list_models()
    if as_json:
        typer.echo(json.dumps({"models_dir": str(store.root), "models": rows}, indent=2))
        return
    typer.echo(f"models in {store.root}: {len(rows)}")
    for row in rows:
        typer.echo("  " + "  ".join(f"{k}={v}" for k, v in row.items()))


@model_app.command("info")
def info(
    model: ModelOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None
) -> None:
    """Where a model's checkpoint is, what it is, and how ``reason`` will prompt it (without loading it)."""
    from mcp_gemma.llm.models import describe_prompt, gguf_summary

    settings = _settings(config, data_dir, model)
    try:
        resolved = _store(settings).resolve(settings.gemma.model)
        report: dict[str, Any] = {
            "model": resolved.model_id,
            "kind": resolved.kind,
            "checkpoint": str(resolved.checkpoint),
            "built": not resolved.needs_conversion,
            "gguf": str(resolved.gguf) if resolved.gguf else None,
        }
        if resolved.gguf is not None and resolved.gguf.is_file():
            report["gguf_file"] = gguf_summary(resolved.gguf)
        config_file = resolved.checkpoint / "config.json"
        if config_file.is_file():
            cfg = json.loads(config_file.read_text(encoding="utf-8"))
            keys = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size", "max_position_embeddings")
            report["config"] = {k: cfg.get(k) for k in keys}
        report.update(describe_prompt(resolved))
    except (McpGemmaError, OSError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_fields(report)


@model_app.command("download")
def download(
    repo_id: Annotated[str, typer.Argument(help="Hub model id, e.g. google/gemma-3-1b-it.")],
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Fetch a checkpoint from the Hugging Face Hub into the models directory (resumes; HF_TOKEN)."""
    from mcp_gemma.llm.models import hub_dir_name, inside

    settings = _settings(config, data_dir)
    store = _store(settings)
    try:
        target = inside(store.root, store.root / "hub" / hub_dir_name(repo_id))
    except McpGemmaError as exc:
        raise _fail(exc, 2) from None
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    try:
        path = fetch_snapshot(repo_id, target, token=token, revision=revision)
    except McpGemmaError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps({"model": repo_id, "path": str(path), "use": f"MCP_GEMMA_GEMMA__MODEL={repo_id}"}))


def fetch_snapshot(repo_id: str, target: Path, *, token: str | None, revision: str | None) -> Path:
    """``snapshot_download`` into ``target`` with a Rich progress bar and actionable errors."""
    from mcp_gemma.errors import AccessDeniedError, ModelUnavailableError, NotFoundError

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelUnavailableError("HF_HUB_OFFLINE is set: unset it to download from the Hub")
    import warnings

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tqdm.rich announces itself as experimental
            from tqdm.rich import tqdm as rich_tqdm  # type: ignore[import-untyped]

            return Path(
                snapshot_download(
                    repo_id,
                    revision=revision,
                    local_dir=target,
                    token=token,
                    endpoint=endpoint,
                    allow_patterns=["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt"],
                    tqdm_class=rich_tqdm,
                )
            )
    except GatedRepoError as exc:
        raise AccessDeniedError(
            f"{repo_id} is gated: accept its licence at {endpoint}/{repo_id} while logged in, "
            "then set HF_TOKEN to a token of that account"
        ) from exc
    except RepositoryNotFoundError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise AccessDeniedError(
                f"the Hub refused {repo_id} ({status}): if it is gated, accept its licence at "
                f"{endpoint}/{repo_id} and set HF_TOKEN; otherwise check the id"
            ) from exc
        raise NotFoundError(f"no model {repo_id!r} on {endpoint} (or it is private: set HF_TOKEN)") from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            raise AccessDeniedError(
                f"the Hub refused {repo_id} ({status}): a gated model needs its licence accepted at "
                f"{endpoint}/{repo_id} and HF_TOKEN set"
            ) from exc
        raise ModelUnavailableError(f"download of {repo_id} failed: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"cannot reach the Hub at {endpoint} to download {repo_id} ({type(exc).__name__}); "
            "check the network or HF_ENDPOINT, then run the command again (it resumes)"
        ) from exc


@model_app.command("remove")
def remove(
    model: Annotated[str, typer.Argument(help="'gemma3-270m-gguf', a Hub id, or a GGUF path (its cache).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete a model's files from the models directory (never your own directories)."""
    settings = _settings(config, data_dir)
    if not yes:
        typer.confirm(f"remove the stored files of {model}?", abort=True)
    try:
        removed = _store(settings).remove(model)
    except McpGemmaError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps({"removed": [str(p) for p in removed]}))


@model_app.command("load-test")
def load_test(
    model: ModelOpt = None,
    prompt: Annotated[str, typer.Option(help="Prompt to complete.")] = "The capital of France is",
    max_new_tokens: Annotated[int, typer.Option(min=1, max=4096, help="Tokens to generate.")] = 32,
    dtype: Annotated[str | None, typer.Option(help="auto, float32, bfloat16 or float16.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Load the model (building its cache if needed), generate once and report the timings."""
    settings = _settings(config, data_dir, model, dtype=dtype, threads=threads)
    from mcp_gemma.llm.factory import build_llm

    service = build_llm(settings)
    shown = LoadProgress()

    async def run() -> dict[str, Any]:
        started = time.perf_counter()
        with shown:
            loaded = await service.ensure_loaded(shown)
        load_s = time.perf_counter() - started
        result = await service.generate(prompt, max_new_tokens=max_new_tokens)
        return {
            "info": loaded.info.model_dump(),
            "load_s": round(load_s, 3),
            "text": result.text,
            "tokens_out": result.tokens_out,
            "generate_s": result.seconds,
            "tokens_per_s": round(result.tokens_out / result.seconds, 2) if result.seconds else None,
        }

    try:
        report = anyio.run(run)
    except McpGemmaError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(report, indent=2))


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    context: Annotated[str | None, typer.Option(help="Text to ground the answer in.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help="Token budget of the answer.")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="0 = greedy.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Ask the local Gemma a question; the answer streams to stdout (what ``reason`` does)."""
    from mcp_gemma.llm.factory import build_llm
    from mcp_gemma.llm.reason import answer_question

    settings = _settings(config, data_dir, model)
    service = build_llm(settings)
    loading = LoadProgress()
    shown = 0

    async def stream(text: str) -> None:
        nonlocal shown
        sys.stdout.write(text[shown:])
        sys.stdout.flush()
        shown = len(text)

    async def run() -> Any:
        return await answer_question(
            service,
            question,
            context,
            [],
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            progress=stream,
            load_progress=loading,
        )

    try:
        with loading:
            result = anyio.run(run)
    except McpGemmaError as exc:
        raise _fail(exc) from None
    sys.stdout.write("\n")
    typer.echo(
        f"[{result.model_id}: {result.tokens_out} tokens in {result.seconds:.2f} s, {result.finish_reason}]",
        err=True,
    )


class LoadProgress:
    """Model load messages on stderr: counted steps (the GGUF conversion's ``dequantising: 120/1067
    MiB``) as a Rich progress bar when stderr is a terminal, every other message as a line.

    Piped (a script, a log), counted messages are lines too. Use as a context manager so the bar
    is closed when the command ends; ``console`` is for tests.
    """

    def __init__(self, console: Any | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> LoadProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    async def __call__(self, message: str) -> None:
        from mcp_gemma.llm.convert import parse_counted

        parsed = parse_counted(message)
        if parsed is None or not self.console.is_terminal:
            self._close()
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)
            return
        label, done, total, unit = parsed
        if self._bar is None:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} " + unit),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)
        self._bar.update(self._task, completed=done, total=total, description=label)
        if done >= total:
            self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
