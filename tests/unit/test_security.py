"""The security building blocks on their own: token buckets, lockout, tokens files, the audit log.

Time is a test clock (a list holding "now"), never a sleep.
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from mcp_gemma.errors import AccessDeniedError, ConfigError
from mcp_gemma.security.audit import AuditLog, outcome
from mcp_gemma.security.limits import KeyedBuckets, Lockout, retry_after
from mcp_gemma.security.principals import Principal, TokenRegistry, load_tokens_file
from mcp_gemma.security.rights import check_tool, collections_used


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_gives_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = KeyedBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0, "each key has its own bucket"
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 100
    assert [buckets.take("a") for _ in range(4)][-1] == pytest.approx(0.5), "never more than the burst"


def test_bucket_give_back_returns_a_token() -> None:
    buckets = KeyedBuckets(rate=0.001, burst=1, clock=Clock())
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    buckets.give_back("a")
    assert buckets.take("a") == 0.0


def test_bucket_map_is_bounded() -> None:
    clock = Clock()
    buckets = KeyedBuckets(rate=0.001, burst=1, clock=clock, max_keys=16)
    for i in range(100):
        buckets.take(f"ip{i}")
    assert len(buckets._buckets) == 16
    assert buckets.take("ip99") > 0, "the most recent keys are kept"


def test_lockout_after_n_failures_in_the_window_and_for_the_cool_down() -> None:
    clock = Clock()
    lock = Lockout(failures=3, window_s=60, lock_s=300, clock=clock)
    assert [lock.fail("ip") for _ in range(2)] == [False, False]
    clock.now += 61  # the first two fall out of the window
    assert lock.fail("ip") is False
    assert lock.locked_for("ip") == 0.0
    assert lock.fail("ip") is False
    assert lock.fail("ip") is True
    assert lock.locked_for("ip") == 300.0
    assert lock.locked_for("other") == 0.0
    clock.now += 299.5
    assert lock.locked_for("ip") == pytest.approx(0.5)
    clock.now += 1
    assert lock.locked_for("ip") == 0.0


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after(0.01), retry_after(1.0), retry_after(1.2), retry_after(float("inf"))] == [
        1,
        1,
        2,
        3600,
    ]


def test_tokens_file_toml_and_json(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"bob-token-0123456789").hexdigest()
    toml = tmp_path / "tokens.toml"
    toml.write_text(
        '[[principals]]\nname = "alice"\ntoken = "alice-token-0123456789"\nnamespaces = ["alice"]\n'
        'access = "write"\n\n[[principals]]\nname = "bob"\n'
        f'token_sha256 = "{digest}"\n',
        encoding="utf-8",
    )
    registry = TokenRegistry.build("admin-secret", toml)
    assert len(registry) == 3
    assert registry.lookup(b"alice-token-0123456789") == Principal("alice", "write", frozenset({"alice"}))
    assert registry.lookup(b"bob-token-0123456789") == Principal("bob", "read", None), "read by default"
    assert registry.lookup(b"admin-secret") == Principal("admin", "write", None)
    assert registry.lookup(b"nope") is None
    js = tmp_path / "tokens.json"
    js.write_text(json.dumps([{"principal": "carol", "token": "c" * 16, "access": "read"}]), encoding="utf-8")
    assert load_tokens_file(js)[0][1] == Principal("carol", "read", None)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('name = "a"\ntoken = "short"', "at least 16 characters"),
        ('name = "a"', "exactly one of 'token' and 'token_sha256'"),
        ('name = "a"\ntoken_sha256 = "abc"', "64 hex digits"),
        ('name = "a b"\ntoken = "aaaaaaaaaaaaaaaaaa"', "'name' must be"),
        ('name = "a"\ntoken = "aaaaaaaaaaaaaaaaaa"\naccess = "root"', "'access' must be"),
        ('name = "a"\ntoken = "aaaaaaaaaaaaaaaaaa"\nnamespaces = []', "'namespaces' is empty"),
        ('name = "a"\ntoken = "aaaaaaaaaaaaaaaaaa"\nnamespaces = ["x y"]', "namespace 'x y'"),
        ('name = "a"\ntoken = "aaaaaaaaaaaaaaaaaa"\nrole = "x"', "unknown key(s) role"),
    ],
)
def test_bad_tokens_file_entries_are_refused_by_name(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(f"[[principals]]\n{entry}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_tokens_file(path)
    assert message in str(err.value)
    assert "principals[0]" in str(err.value)


def test_one_token_for_two_principals_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(
        '[[principals]]\nname = "a"\ntoken = "same-token-0123456789"\n'
        '[[principals]]\nname = "b"\ntoken = "same-token-0123456789"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="share one token"):
        TokenRegistry.build(None, path)


def test_principal_rights() -> None:
    reader = Principal("r", "read", frozenset({"a"}))
    with pytest.raises(AccessDeniedError, match="'r' has read-only access: store_memory changes data"):
        reader.require_write("store_memory")
    with pytest.raises(
        AccessDeniedError, match=r"may not use memory namespace \(agent_id\) 'b'.*its namespaces: a"
    ):
        reader.require_namespace("b", "recall_memory")
    reader.require_namespace("a", "recall_memory")
    assert Principal("w").allows("anything") and Principal("w").can_write


def test_document_calls_use_the_collection_their_arguments_name() -> None:
    assert collections_used("list_documents", {}) == ["default"]
    assert collections_used("get_document", {"id": "x", "collection": "team"}) == ["team"]
    assert collections_used("reason", {"question": "q"}) == []
    assert collections_used("reason", {"use_knowledge_base": True, "collection": "a"}) == ["a"]
    assert collections_used("run_agent", {"task": "t"}) == ["default"], "no list: every tool"
    assert collections_used("run_agent", {"tools": ["calculator"], "collection": "b"}) == []
    assert collections_used("run_agent", {"tools": ["search_documents"], "collection": "b"}) == ["b"]
    assert collections_used("recall_memory", {"collection": "b"}) == []

    alice = Principal("alice", "write", frozenset({"alice"}))
    check_tool(alice, "hybrid_search", {"query": "q", "collection": "alice"})
    check_tool(alice, "reason", {"question": "q"})
    check_tool(alice, "run_agent", {"task": "t", "tools": ["calculator"]})
    with pytest.raises(AccessDeniedError) as refused:
        check_tool(alice, "delete_document", {"id": "d", "collection": "bob"})
    assert str(refused.value) == (
        "principal 'alice' may not use document collection 'bob' (the 'collection' argument) in "
        "delete_document; its namespaces: alice"
    )
    with pytest.raises(AccessDeniedError, match="collection 'default'"):
        check_tool(alice, "research_query", {"query": "q", "use_memory": False})
    reader = Principal("carol", "read", frozenset({"alice"}))
    with pytest.raises(AccessDeniedError, match="read-only access: ingest_document"):
        check_tool(reader, "ingest_document", {"text": "t", "collection": "alice"})
    check_tool(Principal("admin"), "delete_document", {"id": "d", "collection": "anyone"})


def test_audit_log_lines_mode_and_rotation(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit" / "audit.log", max_bytes=4096, backups=2, clock=lambda: 0.0)
    log.record("alice", "store_memory", ["memory:m1", "agent:alice"], "ok", transport="streamable-http")
    first = json.loads(log.path.read_text(encoding="utf-8"))
    assert first == {
        "ts": "1970-01-01T00:00:00.000+00:00",
        "principal": "alice",
        "transport": "streamable-http",
        "action": "store_memory",
        "ids": ["memory:m1", "agent:alice"],
        "result": "ok",
    }
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.path.parent.stat().st_mode) == 0o700
    for i in range(200):
        log.record(
            "bob", "delete_document", [f"doc:{i}"], outcome(ValueError("secret text")), transport="rest"
        )
    names = sorted(p.name for p in log.path.parent.iterdir())
    assert names == ["audit.log", "audit.log.1", "audit.log.2"], "two backups kept, older ones dropped"
    for path in log.path.parent.iterdir():
        assert path.stat().st_size <= 4096
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    last = json.loads(log.path.read_text(encoding="utf-8").splitlines()[-1])
    assert last["ids"] == ["doc:199"] and last["result"] == "error:ValueError"
    assert "secret text" not in "".join(p.read_text(encoding="utf-8") for p in log.path.parent.iterdir())


def test_audit_log_caps_ids(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    log.record("a", "batch_ingest", [f"doc:{i}" for i in range(250)], "ok", transport="stdio")
    entry = json.loads(log.path.read_text(encoding="utf-8"))
    assert len(entry["ids"]) == 100 and entry["ids_total"] == 250


def test_security_settings_are_checked_at_start(tmp_path: Path) -> None:
    from mcp_gemma.settings import load_settings

    tokens = tmp_path / "tokens.toml"
    tokens.write_text('[[principals]]\nname = "a"\ntoken = "aaaaaaaaaaaaaaaaaa"\n', encoding="utf-8")
    public = load_settings(
        data_dir=tmp_path, transport="streamable-http", http={"host": "0.0.0.0", "tokens_file": tokens}
    )
    assert public.http.has_auth, "a tokens file is auth enough for a public bind"
    with pytest.raises(ConfigError, match=r"set both http\.tls_certfile and http\.tls_keyfile"):
        load_settings(data_dir=tmp_path, http={"tls_certfile": tokens})
    with pytest.raises(ConfigError, match=r"http\.tls_keyfile .*missing\.pem does not exist"):
        load_settings(
            data_dir=tmp_path, http={"tls_certfile": tokens, "tls_keyfile": tmp_path / "missing.pem"}
        )
    with pytest.raises(ConfigError, match=r"http\.limits\.ip_burst"):
        load_settings(data_dir=tmp_path, http={"limits": {"ip_burst": 0}})
    with pytest.raises(ConfigError, match=r"embedded_redis\.maxmemory_policy"):
        load_settings(data_dir=tmp_path, embedded_redis={"maxmemory_policy": "drop-everything"})
