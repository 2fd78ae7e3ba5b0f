"""``mcp-gemma chat`` driven as a person would: in a pseudo-terminal (pexpect), and with piped input.

Each test has its own data directory (its own embedded Redis), so chunk ids start at 1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from mcp_gemma.store.keys import SLOT_GROUPS, group_of
from tests.integration.conftest import server_env

GLIDER = (
    "The Orbis lab named its solar glider Zephyr. The glider first flew in March 2031 over the Atacama "
    "desert. Its wings carry forty square metres of solar cells.\n"
)
QUESTION = "What did the Orbis lab name its solar glider?"
# The document's one chunk: the first id its slot group hands out (store/keys.py).
CHUNK = SLOT_GROUPS + group_of("file:glider.txt")
ANSWER = (
    f"The Orbis lab named its solar glider Zephyr. [chunk:{CHUNK}] "
    f"Its wings carry forty square metres of solar cells. [chunk:{CHUNK}]"
)
PROMPT = "you> "


def chat_env(data: Path, **extra: str) -> dict[str, str]:
    return server_env(data, TERM="dumb", NO_COLOR="1", COLUMNS="240", **extra)


def ingest_glider(tmp_path: Path, env: dict[str, str]) -> None:
    doc = tmp_path / "glider.txt"
    doc.write_text(GLIDER, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mcp_gemma", "ingest", str(doc)],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def spawn(env: dict[str, str], *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "mcp_gemma", "chat", *args],
        env=env,
        encoding="utf-8",
        timeout=120,
        dimensions=(50, 240),
    )


def test_lightweight_chat_in_a_terminal_answers_from_retrieval_and_exits_cleanly(tmp_path: Path) -> None:
    env = chat_env(tmp_path / "data")
    ingest_glider(tmp_path, env)
    child = spawn(env, "--lightweight")
    try:
        child.expect(r"session ([0-9a-f]{32}) \(new\); mode retrieval, knowledge base on\. /help")
        first = child.match.group(1)
        child.expect_exact(PROMPT)
        child.sendline(QUESTION)
        child.expect_exact(f"evidence: chunk:{CHUNK}")
        child.expect_exact(ANSWER)
        child.expect_exact(f"sources: chunk:{CHUNK}")
        child.expect_exact(PROMPT)
        child.sendline("/kb off")
        child.expect_exact("mode retrieval, knowledge base off")
        child.sendline("hello")
        child.expect_exact("error: retrieval mode answers from the knowledge base only")
        child.sendline("/agent")
        child.expect_exact("agent mode needs the model; this chat is lightweight")
        child.sendline("/memory")
        child.expect_exact("2 messages in the working tier, 1 exchanges in the episodic tier")
        child.sendline("/reset")
        child.expect(r"new session ([0-9a-f]{32})")
        assert child.match.group(1) != first
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before

    again = spawn(env, "--lightweight", "--session", first)
    try:
        again.expect_exact(f"session {first} (resumed, 1 earlier exchanges)")
        again.expect_exact(f"you> {QUESTION}")
        again.expect_exact(ANSWER)
        again.expect_exact(PROMPT)
        again.sendeof()
        again.expect(pexpect.EOF)
    finally:
        again.close()
    assert again.exitstatus == 0

    interrupted = spawn(env, "--lightweight")  # Ctrl-C at the prompt leaves at once (130, no traceback)
    try:
        interrupted.expect_exact(PROMPT)
        interrupted.sendintr()
        interrupted.expect(pexpect.EOF)
    finally:
        interrupted.close()
    assert interrupted.exitstatus == 130
    assert "Traceback" not in str(interrupted.before)


def test_chat_reads_lines_when_stdin_is_not_a_terminal(tmp_path: Path) -> None:
    env = chat_env(tmp_path / "data")
    ingest_glider(tmp_path, env)
    done = subprocess.run(
        [sys.executable, "-m", "mcp_gemma", "chat", "--lightweight"],
        input=f"{QUESTION}\n/bogus\n",
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1:] == [
        f"evidence: chunk:{CHUNK}",
        ANSWER,
        f"sources: chunk:{CHUNK}",
        "unknown command /bogus; /help lists them",
        "",
    ]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--session", "../x"],
            1,
            "mcp-gemma: error: a session id is 1 to 64 letters, digits, '-' or '_' "
            "(starting with a letter or digit)",
        ),
        (
            ["--agent"],
            2,
            "mcp-gemma: error: --agent needs the model; --lightweight answers from retrieval alone",
        ),
    ],
)
def test_bad_options_are_clear_errors(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mcp_gemma", "chat", "--lightweight", *args],
        env=chat_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert (done.returncode, done.stderr.strip()) == (code, message)


@pytest.mark.model
def test_chat_with_the_model_streams_cancels_and_grounds(tmp_path: Path, shared_models_dir: Path) -> None:
    env = chat_env(tmp_path / "data", MCP_GEMMA_GEMMA__CACHE_DIR=str(shared_models_dir))
    ingest_glider(tmp_path, env)
    child = spawn(env)
    try:
        child.expect(r"\(new\); mode model, knowledge base off\. /help")
        child.expect_exact(PROMPT)
        child.sendline("What is the capital of France?")
        child.expect(r"\r\nParis\r\n", timeout=300)  # the first answer loads (and may convert) Gemma
        child.expect_exact(PROMPT)
        child.sendline("List the first fifty prime numbers separated by commas.")
        child.expect_exact("1, 2, 3")
        child.sendintr()  # Ctrl-C stops the answer, not the chat
        child.expect_exact("(cancelled)")
        child.expect_exact(PROMPT)
        child.sendline("/kb on")
        child.expect_exact("mode model, knowledge base on")
        child.sendline(QUESTION)
        child.expect_exact(f"evidence: chunk:{CHUNK}")
        child.expect(r"\r\nZephyr\r\n")
        child.expect_exact(f"sources: chunk:{CHUNK}")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
