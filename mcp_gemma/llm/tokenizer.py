"""A checkpoint's tokenizer on the Rust core or the ``tokenizers`` library (no transformers import).

``transformers.AutoTokenizer`` wraps the same Rust tokenizer but importing transformers costs
seconds and hundreds of MB; the int8 Gemma path needs only encode, decode, the special tokens and
the chat template, which this class provides with the same results (``tests/llm`` compares them).
A converted model cache also holds ``tokenizer.bin``, which the Rust core loads in a fraction of
the time ``tokenizer.json`` takes to parse (``fast_tokenizer.py``).
Chat templates render in jinja2's sandbox with the globals transformers gives them.
:class:`HFTokenizer` offers the same operations over a transformers tokenizer (the float path).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from mcp_gemma.errors import InvalidInputError, McpGemmaError, ModelUnavailableError

logger = logging.getLogger(__name__)


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


class _JsonTokenizer:
    """``tokenizers.Tokenizer`` behind the operations :class:`~mcp_gemma.native.BpeTokenizer` has."""

    def __init__(self, tok: Any) -> None:
        self._tok = tok

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def token_to_id(self, token: str) -> int | None:
        found = self._tok.token_to_id(token)
        return None if found is None else int(found)

    def pieces(self) -> list[str | None]:
        special = {i for i, added in self._tok.get_added_tokens_decoder().items() if added.special}
        texts = self._tok.decode_batch(
            [[i] for i in range(self._tok.get_vocab_size())], skip_special_tokens=False
        )
        return [None if i in special else str(text) for i, text in enumerate(texts)]


class _Backend(Protocol):
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...
    def token_to_id(self, token: str) -> int | None: ...
    def pieces(self) -> list[str | None]: ...


def _load_backend(checkpoint: Path) -> _Backend:
    """``tokenizer.bin`` on the Rust core when it is there; else ``tokenizer.json`` on ``tokenizers``,
    writing ``tokenizer.bin`` for next time in a converted model cache (an older one lacks it)."""
    from mcp_gemma.llm.convert import MARKER
    from mcp_gemma.llm.fast_tokenizer import load_fast_tokenizer, write_fast_tokenizer

    fast = load_fast_tokenizer(checkpoint)
    if fast is not None:
        return fast
    from tokenizers import Tokenizer

    backend = _JsonTokenizer(Tokenizer.from_file(str(checkpoint / "tokenizer.json")))
    if (checkpoint / MARKER).is_file():
        try:
            write_fast_tokenizer(checkpoint)
        except (OSError, ValueError, McpGemmaError) as exc:
            logger.warning("could not write the fast tokenizer file in %s: %s", checkpoint, exc)
    return backend


class CheckpointTokenizer:
    """Encode / decode / chat template of a checkpoint directory (``tokenizer.bin`` on the Rust
    core where the model cache has it, ``tokenizer.json`` on ``tokenizers`` otherwise)."""

    def __init__(self, checkpoint: Path) -> None:
        try:
            self._tok = _load_backend(checkpoint)
            config_path = checkpoint / "tokenizer_config.json"
            config: dict[str, Any] = (
                json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
            )
        except Exception as exc:
            raise ModelUnavailableError(f"could not read the tokenizer in {checkpoint}: {exc}") from exc
        self.special_tokens = special_tokens_of(config)
        self.chat_template: str | None = chat_template_of(checkpoint, config)
        self._compiled: Any = None
        self.eos_token_id = self._id_of("eos_token")
        self.unk_token_id = self._id_of("unk_token")

    def _id_of(self, name: str) -> int | None:
        text = self.special_tokens.get(name)
        return None if text is None else self._tok.token_to_id(text)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        """The id of one token, or the unknown token's id when it is not in the vocabulary."""
        found = self._tok.token_to_id(token)
        return self.unk_token_id if found is None else found

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text`` (with the post-processor's BOS when ``add_special_tokens``)."""
        return self._tok.encode(text, add_special_tokens)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``."""
        return self._tok.decode(ids, skip_special_tokens)

    def token_pieces(self) -> list[str | None]:
        """Each token id's text as decoding writes it; ``None`` for special tokens (constrained decoding)."""
        return self._tok.pieces()

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The chat template applied to ``messages`` (as transformers' ``apply_chat_template``)."""
        if self.chat_template is None:
            raise InvalidInputError("this model has no chat template; send a plain prompt")
        if self._compiled is None:
            self._compiled = compile_chat_template(self.chat_template)
        return render_chat_template(
            self._compiled, messages, self.special_tokens, add_generation_prompt=add_generation_prompt
        )


def special_tokens_of(config: dict[str, Any]) -> dict[str, str]:
    """The named special tokens of a ``tokenizer_config.json`` (what chat templates may use)."""
    return {
        name: text
        for name in ("bos_token", "eos_token", "unk_token", "pad_token")
        if (text := _token_text(config.get(name))) is not None
    }


def chat_template_of(checkpoint: Path, config: dict[str, Any]) -> str | None:
    """A checkpoint's chat template: ``tokenizer_config.json``'s, else ``chat_template.jinja``'s."""
    template = config.get("chat_template")
    jinja = checkpoint / "chat_template.jinja"
    if template is None and jinja.is_file():
        template = jinja.read_text(encoding="utf-8")
    return template if isinstance(template, str) else None


def compile_chat_template(template: str) -> Any:
    """A chat template compiled in jinja2's sandbox with the globals transformers gives it."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except TemplateError as exc:
        raise ModelUnavailableError(f"the model's chat template does not compile: {exc}") from exc


def render_chat_template(
    compiled: Any,
    messages: list[dict[str, str]],
    special_tokens: dict[str, str],
    *,
    add_generation_prompt: bool = True,
) -> str:
    """``messages`` through a compiled chat template (as transformers' ``apply_chat_template``)."""
    from jinja2.exceptions import TemplateError

    try:
        return str(
            compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **special_tokens)
        )
    except TemplateError as exc:
        raise InvalidInputError(f"the model's chat template rejected the messages: {exc}") from exc


class HFTokenizer:
    """The few tokenizer operations decoding needs, over a transformers tokenizer."""

    def __init__(self, tok: Any) -> None:
        self._tok = tok
        self.chat_template: str | None = getattr(tok, "chat_template", None)
        self.eos_token_id: int | None = tok.eos_token_id
        self.unk_token_id: int | None = tok.unk_token_id

    def convert_tokens_to_ids(self, token: str) -> int | None:
        found = self._tok.convert_tokens_to_ids(token)
        return found if isinstance(found, int) else None

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return list(self._tok(text, add_special_tokens=add_special_tokens)["input_ids"])

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def token_pieces(self) -> list[str | None]:
        special = set(self._tok.all_special_ids)
        texts = self._tok.batch_decode([[i] for i in range(len(self._tok))], skip_special_tokens=False)
        return [None if i in special else str(text) for i, text in enumerate(texts)]

    def render_chat(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        text = self._tok.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        return str(text)
