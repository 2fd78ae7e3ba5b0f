"""Labelled retrieval corpora built from text that ships with Python 3.11's standard library.

Four corpora, all built at run time from the interpreter's own files (nothing is downloaded):

* ``prose`` (held out): the language reference topics of ``pydoc_data.topics``.
* ``reference``: stdlib module docstrings plus the docstrings of public functions and classes.
* ``code``: source of pure-Python stdlib functions and methods, docstrings stripped.
* ``records``: one short record per errno code, HTTP status, signal and common MIME type.

Each corpus has four query styles. ``verbatim`` and ``rare_removed`` are generated here with a
fixed seed per corpus; ``keyword`` and ``paraphrase`` are hand-written in
``benches/data/quality_<corpus>.json`` (written from the documents' text, never from a search run).

The records corpus reflects the platform's errno and signal tables (Linux when measured).
"""

from __future__ import annotations

import ast
import errno
import http
import importlib
import inspect
import json
import mimetypes
import os
import random
import re
import signal
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

STYLES: tuple[str, ...] = ("verbatim", "rare_removed", "keyword", "paraphrase")
CORPUS_NAMES: tuple[str, ...] = ("prose", "reference", "code", "records")
GENERATED_PER_STYLE = 40
SEEDS: dict[str, int] = {"prose": 1101, "reference": 2202, "code": 3303, "records": 4404}

_DOC_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")
_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(`])")
_WORD = re.compile(r"\w+")
_EDGE = re.compile(r"^\W+|\W+$")
_HEADING_RULE = re.compile(r"^[*=\-~^]{3,}$")


@dataclass(frozen=True)
class Doc:
    id: str
    text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Query:
    text: str
    relevant: tuple[str, ...]
    style: str


@dataclass(frozen=True)
class Corpus:
    name: str
    kind: str
    held_out: bool
    docs: tuple[Doc, ...]
    queries: tuple[Query, ...]


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------

REFERENCE_MODULES: tuple[str, ...] = (
    "abc", "argparse", "array", "ast", "base64", "bz2", "calendar", "cmath", "codecs", "collections",
    "colorsys", "configparser", "contextlib", "copy", "csv", "difflib", "dis", "doctest", "email",
    "filecmp", "fnmatch", "fractions", "ftplib", "functools", "getopt", "getpass", "gettext", "gzip",
    "hashlib", "heapq", "hmac", "html", "imaplib", "inspect", "io", "ipaddress", "itertools", "json",
    "keyword", "linecache", "locale", "logging", "lzma", "mailbox", "math", "mimetypes", "numbers",
    "operator", "optparse", "os", "pdb", "pickle", "pickletools", "platform", "plistlib", "poplib",
    "pprint", "pstats", "quopri", "random", "re", "reprlib", "sched", "secrets", "selectors", "shelve",
    "shlex", "shutil", "smtplib", "socket", "socketserver", "sqlite3", "ssl", "stat", "statistics",
    "string", "struct", "subprocess", "symtable", "sysconfig", "tabnanny", "tarfile", "tempfile",
    "threading", "timeit", "tokenize", "trace", "traceback", "types", "typing", "unittest", "uuid",
    "wave", "weakref", "webbrowser", "xml", "zipfile", "zlib",
)  # fmt: skip

# Modules whose public functions and classes each become a ``func:<module>.<name>`` document.
REFERENCE_FUNCTION_MODULES: tuple[str, ...] = (
    "shutil", "textwrap", "statistics", "heapq", "bisect", "json", "csv", "os.path", "string",
    "fnmatch", "difflib", "functools", "base64", "tempfile", "glob", "calendar", "shlex", "random",
    "ipaddress",
)  # fmt: skip

CODE_MODULES: tuple[str, ...] = (
    "textwrap", "shutil", "posixpath", "statistics", "heapq", "fractions", "difflib", "configparser",
    "argparse", "csv", "string", "fnmatch", "glob", "tempfile", "calendar", "colorsys", "base64",
    "quopri", "shlex", "json.encoder", "json.decoder", "ipaddress", "urllib.parse", "email.utils",
    "html", "gettext", "locale", "pprint", "reprlib", "random",
)  # fmt: skip
CODE_PER_MODULE = 8
CODE_MIN_LINES = 4
CODE_MAX_LINES = 80

MIME_EXTENSIONS: tuple[str, ...] = (
    ".aac", ".avi", ".avif", ".bin", ".bmp", ".c", ".css", ".csv", ".doc", ".eml", ".eps", ".exe",
    ".gif", ".gtar", ".h5", ".heic", ".htm", ".html", ".ico", ".jpeg", ".jpg", ".js", ".json", ".latex",
    ".m3u8", ".mjs", ".mov", ".mp3", ".mp4", ".mpeg", ".opus", ".p12", ".pdf", ".png", ".ppt", ".ps",
    ".py", ".pyc", ".rdf", ".sh", ".svg", ".swf", ".tar", ".tex", ".tif", ".tiff", ".tsv", ".txt",
    ".vcf", ".vtt", ".wasm", ".wav", ".webm", ".webmanifest", ".xls", ".xml", ".zip",
)  # fmt: skip


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception:  # a module that fails to import is skipped, as documented
        return None


def _clean(text: str) -> str:
    return _ADDRESS.sub("", inspect.cleandoc(text)).strip()


def prose_docs() -> list[Doc]:
    from pydoc_data.topics import topics

    return [
        Doc(
            id=f"topic:{key}",
            text=topics[key].strip(),
            metadata={"title": key, "source": "pydoc_data.topics"},
        )
        for key in sorted(topics)
    ]


def _own_doc(obj: object) -> str:
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return _clean(doc) if isinstance(doc, str) else ""


def _signature(obj: Any) -> str:
    try:
        return _ADDRESS.sub("", str(inspect.signature(obj)))
    except (TypeError, ValueError):
        return "(...)"


def _public_names(module: ModuleType) -> list[str]:
    exported = getattr(module, "__all__", None)
    if exported is not None:
        return sorted(str(name) for name in exported)
    return sorted(
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj))
        and getattr(obj, "__module__", None) in (module.__name__, "_" + module.__name__)
    )


def reference_docs() -> list[Doc]:
    docs: list[Doc] = []
    for name in REFERENCE_MODULES:
        module = _import(name)
        if module is None:
            continue
        text = _clean(module.__doc__ or "")
        if len(text) >= 20:
            docs.append(Doc(id=f"module:{name}", text=text, metadata={"title": name, "source": "module"}))
    seen: list[object] = []
    for name in REFERENCE_FUNCTION_MODULES:
        module = _import(name)
        if module is None:
            continue
        for attr in _public_names(module):
            obj = getattr(module, attr, None)
            if not callable(obj) or any(obj is other for other in seen):
                continue
            doc = _own_doc(obj)
            if len(doc) < 60:
                continue
            seen.append(obj)
            qual = f"{name}.{attr}"
            docs.append(
                Doc(
                    id=f"func:{qual}",
                    text=f"{qual}{_signature(obj)}\n\n{doc}",
                    metadata={"title": qual, "source": "docstring", "module": name},
                )
            )
    return docs


def _functions(module: ModuleType) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Public top-level functions and methods (plus ``__init__``) of a module, from its source file."""
    path = getattr(module, "__file__", None)
    if not path or not str(path).endswith(".py"):
        return []
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            found.append((node.name, node))
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and (
                    item.name == "__init__" or not item.name.startswith("_")
                ):
                    found.append((f"{node.name}.{item.name}", item))
    return found


def _strip_docstring(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """Source lines of ``node`` (decorators included) without its docstring statement."""
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    end = node.end_lineno or node.lineno
    keep = list(range(start, end + 1))
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        cut = set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
        keep = [n for n in keep if n not in cut]
    return textwrap.dedent("\n".join(lines[n - 1] for n in keep)).splitlines()


def code_docs() -> list[Doc]:
    docs: list[Doc] = []
    seen: set[str] = set()
    for name in CODE_MODULES:
        module = _import(name)
        if module is None:
            continue
        source = Path(str(module.__file__)).read_text(encoding="utf-8").splitlines()
        candidates: list[tuple[str, str]] = []
        for qual, node in sorted(_functions(module), key=lambda pair: pair[0]):
            body = [line.rstrip() for line in _strip_docstring(source, node)]
            body = [line for line in body if line.strip()]
            if CODE_MIN_LINES <= len(body) <= CODE_MAX_LINES and f"{name}.{qual}" not in seen:
                seen.add(f"{name}.{qual}")
                candidates.append((qual, "\n".join(body)))
        if len(candidates) > CODE_PER_MODULE:
            picked = set(random.Random(f"code:{name}").sample(range(len(candidates)), CODE_PER_MODULE))
            candidates = [pair for i, pair in enumerate(candidates) if i in picked]
        for qual, text in candidates:
            docs.append(
                Doc(
                    id=f"code:{name}.{qual}",
                    text=text,
                    metadata={"title": f"{name}.{qual}", "source": "stdlib source", "module": name},
                )
            )
    return docs


def records_docs() -> list[Doc]:
    docs: list[Doc] = []
    names = sorted(
        (n for n in dir(errno) if n.startswith("E") and n.isupper()), key=lambda n: (getattr(errno, n), n)
    )
    for name in names:
        number = int(getattr(errno, name))
        docs.append(
            Doc(
                id=f"errno:{name}",
                text=f"{name} ({number}): {os.strerror(number)}",
                metadata={"title": name, "source": "errno", "number": number},
            )
        )
    for status in http.HTTPStatus:
        text = f"HTTP {status.value} {status.phrase}"
        if status.description:
            text += f": {status.description}"
        docs.append(
            Doc(id=f"http:{status.value}", text=text, metadata={"title": status.phrase, "source": "http"})
        )
    for sig in signal.Signals:
        docs.append(
            Doc(
                id=f"signal:{sig.name}",
                text=f"{sig.name} ({sig.value}): {signal.strsignal(sig)}",
                metadata={"title": sig.name, "source": "signal", "number": sig.value},
            )
        )
    table = mimetypes.MimeTypes().types_map[True]  # the built-in table, not the system's files
    for ext in MIME_EXTENSIONS:
        if ext in table:
            docs.append(
                Doc(id=f"mime:{ext}", text=f"{ext}: {table[ext]}", metadata={"title": ext, "source": "mime"})
            )
    return docs


_BUILDERS: dict[str, tuple[str, bool, Callable[[], list[Doc]]]] = {
    "prose": ("Python language reference topics (pydoc_data.topics)", True, prose_docs),
    "reference": ("stdlib module docstrings and public function/class docstrings", False, reference_docs),
    "code": ("source of pure-Python stdlib functions and methods, docstrings stripped", False, code_docs),
    "records": ("short records: errno codes, HTTP statuses, signals, MIME types", False, records_docs),
}


# --------------------------------------------------------------------------------------------
# Generated queries
# --------------------------------------------------------------------------------------------


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _sentences(text: str) -> list[str]:
    """Prose sentences of a document, in order; indented blocks (code, grammar) and rules are skipped."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        lines = [line for line in para.splitlines() if line.strip()]
        if not lines or all(line[:1].isspace() for line in lines):
            continue
        lines = [line for line in lines if not _HEADING_RULE.match(line.strip())]
        out.extend(s.strip() for s in _SENTENCE_END.split(_collapse(" ".join(lines))) if s.strip())
    return out


def _is_prose(sentence: str) -> bool:
    words = sentence.split()
    if not 6 <= len(words) <= 30 or sentence.endswith(":"):
        return False
    alpha = sum(1 for w in words if re.fullmatch(r"[\"'(]*[A-Za-z][A-Za-z'-]*[\"'),.:;!?]*", w))
    return alpha >= 0.7 * len(words)


def _code_tokens(line: str) -> list[str]:
    return [t.lower() for t in _WORD.findall(line)]


def _word_key(word: str) -> str:
    return _EDGE.sub("", word.lower())


def _candidates(corpus: str, doc: Doc) -> list[str]:
    if corpus == "code":
        lines = [line.strip() for line in doc.text.splitlines()[1:]]
        return [
            line
            for line in lines
            if "#" not in line
            and not line.startswith("@")
            and len(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", line)) >= 6
        ]
    if corpus == "records":
        _, sep, desc = doc.text.partition(": ")
        return [desc.strip()] if sep and len(desc.split()) >= 6 else []
    sentences = _sentences(doc.text)
    if len(sentences) > 2:
        sentences = sentences[1:]
    return [s for s in sentences if _is_prose(s)]


def _containing(docs: Sequence[Doc], collapsed: Sequence[str], needle: str) -> tuple[str, ...]:
    target = _collapse(needle)
    return tuple(doc.id for doc, text in zip(docs, collapsed, strict=True) if target in text)


def _remove_rarest(corpus: str, sentence: str, df: dict[str, int]) -> str | None:
    if corpus == "code":
        keys = _code_tokens(sentence)
    else:
        keys = [k for k in (_word_key(w) for w in sentence.split()) if k]
    distinct = sorted(dict.fromkeys(keys), key=lambda k: (df.get(k, 0), -len(k), k))
    drop = set(distinct[:3])
    if corpus == "code":
        kept_text = _WORD.sub(lambda m: "" if m.group(0).lower() in drop else m.group(0), sentence)
        kept_text = _collapse(kept_text)
        kept = len(_code_tokens(kept_text))
    else:
        words = [w for w in sentence.split() if _word_key(w) not in drop]
        kept_text = " ".join(words)
        kept = sum(1 for w in words if _word_key(w))
    return kept_text if kept >= 3 else None


def generated_queries(name: str, docs: Sequence[Doc]) -> tuple[list[Query], list[Query]]:
    """The ``verbatim`` and ``rare_removed`` queries of a corpus (deterministic, seeded per corpus)."""
    rng = random.Random(SEEDS[name])
    collapsed = [_collapse(doc.text) for doc in docs]
    df: dict[str, int] = {}
    for doc in docs:
        keys = _code_tokens(doc.text) if name == "code" else [_word_key(w) for w in doc.text.split()]
        for key in dict.fromkeys(keys):
            df[key] = df.get(key, 0) + 1
    eligible: list[tuple[Doc, list[str]]] = []
    taken: set[str] = set()
    for doc in docs:
        cands = _candidates(name, doc)
        if name == "records":  # records that share a description (aliases) are one target, all relevant
            cands = [c for c in cands if c not in taken]
            taken.update(cands)
        else:  # a sentence shared with another document would be ambiguous
            cands = [c for c in cands if sum(1 for other in collapsed if _collapse(c) in other) == 1]
        if cands:
            eligible.append((doc, cands))
    targets = rng.sample(eligible, min(GENERATED_PER_STYLE, len(eligible)))
    verbatim: list[Query] = []
    rare: list[Query] = []
    for _doc, cands in targets:
        sentence = rng.choice(cands)
        relevant = _containing(docs, collapsed, sentence)
        verbatim.append(Query(text=sentence, relevant=relevant, style="verbatim"))
        reduced = _remove_rarest(name, sentence, df)
        if reduced is not None:
            rare.append(Query(text=reduced, relevant=relevant, style="rare_removed"))
    return verbatim, rare


# --------------------------------------------------------------------------------------------
# Hand-written queries and loading
# --------------------------------------------------------------------------------------------


def hand_written_queries(name: str, doc_ids: set[str]) -> tuple[list[Query], list[Query]]:
    """The ``keyword`` and ``paraphrase`` queries of ``benches/data/quality_<name>.json``."""
    path = DATA_DIR / f"quality_{name}.json"
    entries = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of objects")
    keyword: list[Query] = []
    paraphrase: list[Query] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"doc", "keyword", "paraphrase"} <= entry.keys():
            raise ValueError(f"{path}: entry {i} needs doc, keyword and paraphrase")
        raw = entry["doc"]
        relevant = (raw,) if isinstance(raw, str) else tuple(raw)
        if not relevant:
            raise ValueError(f"{path}: entry {i} names no document")
        for doc_id in relevant:
            if not isinstance(doc_id, str) or doc_id not in doc_ids:
                raise ValueError(f"{path}: entry {i} refers to unknown doc id {doc_id!r}")
        for style, target in (("keyword", keyword), ("paraphrase", paraphrase)):
            text = entry[style]
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{path}: entry {i} has an empty {style} query")
            target.append(Query(text=text.strip(), relevant=relevant, style=style))
    return keyword, paraphrase


def build_corpus(name: str, per_style: int | None = None) -> Corpus:
    if name not in _BUILDERS:
        raise ValueError(f"unknown corpus {name!r}; expected one of {', '.join(CORPUS_NAMES)}")
    kind, held_out, builder = _BUILDERS[name]
    docs = builder()
    ids = [doc.id for doc in docs]
    for doc_id in ids:
        if not _DOC_ID.match(doc_id):
            raise ValueError(f"corpus {name}: bad doc id {doc_id!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"corpus {name}: duplicate doc ids")
    verbatim, rare = generated_queries(name, docs)
    keyword, paraphrase = hand_written_queries(name, set(ids))
    queries: list[Query] = []
    for group in (verbatim, rare, keyword, paraphrase):
        queries.extend(group if per_style is None else group[:per_style])
    return Corpus(name=name, kind=kind, held_out=held_out, docs=tuple(docs), queries=tuple(queries))


def load_corpora(names: Sequence[str] | None = None, per_style: int | None = None) -> list[Corpus]:
    """Build the corpora; per_style caps queries per style (deterministic subset: the first N in file order)
    for a bounded CI run."""
    return [build_corpus(name, per_style) for name in (CORPUS_NAMES if names is None else names)]
