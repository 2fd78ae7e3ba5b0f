"""Settings: precedence, validation messages, the documented defaults file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import SecretStr

from mcp_gemma.errors import ConfigError
from mcp_gemma.settings import Settings, load_settings, mask_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("MCP_GEMMA_") or key in {"REDIS_URL", "HF_TOKEN"}:
            monkeypatch.delenv(key)


def test_defaults_file_matches_builtin_defaults() -> None:
    data = tomllib.loads((ROOT / "configs" / "default.toml").read_text(encoding="utf-8"))
    defaults = Settings().model_dump(mode="json")
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, subval in value.items():
                assert defaults[key][sub] == subval, f"{key}.{sub}"
        else:
            assert defaults[key] == value, key


def test_precedence_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'namespace = "fromfile"\nlog_level = "DEBUG"\n[http]\nport = 1111\nhost = "127.0.0.1"\n',
        encoding="utf-8",
    )
    s = load_settings(cfg)
    assert (s.namespace, s.log_level, s.http.port) == ("fromfile", "DEBUG", 1111)
    monkeypatch.setenv("MCP_GEMMA_NAMESPACE", "fromenv")
    monkeypatch.setenv("MCP_GEMMA_HTTP__PORT", "2222")
    s = load_settings(cfg)
    assert (s.namespace, s.http.port, s.log_level) == ("fromenv", 2222, "DEBUG")
    s = load_settings(cfg, namespace="fromcli", http={"port": 3333})
    assert (s.namespace, s.http.port, s.http.host) == ("fromcli", 3333, "127.0.0.1")


def test_redis_url_and_hf_token_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:secret@localhost:6379/0")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    s = load_settings()
    assert s.redis_url is not None and s.redis_url.get_secret_value().endswith("6379/0")
    assert s.hf_token is not None and s.hf_token.get_secret_value() == "hf_x"
    assert "secret" not in str(s.masked())


def test_invalid_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_GEMMA_HTTP__PORT", "99999")
    with pytest.raises(ConfigError, match=r"http\.port"):
        load_settings()


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("namespace = [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("no_such_setting = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no_such_setting"):
        load_settings(unknown)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_non_loopback_http_requires_token() -> None:
    with pytest.raises(ConfigError, match="AUTH_TOKEN"):
        load_settings(transport="streamable-http", http={"host": "0.0.0.0"})
    s = load_settings(transport="streamable-http", http={"host": "0.0.0.0", "auth_token": "t0ken"})
    assert s.http.auth_token is not None


def test_data_dir_defaults_to_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert load_settings().data_dir == (tmp_path / "mcp-gemma").resolve()


def test_mask_url() -> None:
    assert mask_url("redis://user:pw@h:1/0") == "redis://user:****@h:1/0"
    assert mask_url("redis://:pw@h:1") == "redis://:****@h:1"
    assert mask_url("unix:///tmp/x.sock") == "unix:///tmp/x.sock"


def test_removed_setting_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old.toml"
    old.write_text("[embedding]\nbulk_min_texts = 512\nbatch_size = 16\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="mcp_gemma.embeddings.config"):
        s = load_settings(old)  # a config written for an older version still starts the server
    assert s.embedding.batch_size == 16 and "bulk_min_texts" not in s.embedding.model_dump()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "embedding.bulk_min_texts is ignored and can be removed from the config"
    ]
    caplog.clear()
    monkeypatch.setenv("MCP_GEMMA_EMBEDDING__BULK_MIN_TEXTS", "0")
    with caplog.at_level("WARNING", logger="mcp_gemma.embeddings.config"):
        assert load_settings().embedding.batch_size == 32
    assert len(caplog.records) == 1 and "bulk_min_texts" in caplog.records[0].getMessage()


def test_environment_names_any_case_and_nested_keys_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("mcp_gemma_namespace", "lower")
    monkeypatch.setenv("MCP_GEMMA_HTTP", '{"port": 2223, "host": "127.0.0.2"}')
    monkeypatch.setenv("Mcp_Gemma_Http__Port", "2224")  # the nested name wins over the JSON's key
    monkeypatch.setenv("MCP_GEMMA_HTTP__LIMITS__TRUSTED_PROXIES", '["10.0.0.1"]')
    monkeypatch.setenv("MCP_GEMMA_MEMORY__TIERS__WORKING__TTL_S", "61")
    monkeypatch.setenv("MCP_GEMMA_ALLOWED_ROOTS", '["/tmp"]')
    monkeypatch.setenv("MCP_GEMMA_NO_SUCH_SETTING", "1")  # other programs' and our own non-settings
    s = load_settings()
    assert (s.namespace, s.http.host, s.http.port) == ("lower", "127.0.0.2", 2224)
    assert s.http.limits.trusted_proxies == ["10.0.0.1"]
    assert s.memory.tiers["working"].ttl_s == 61.0
    assert s.memory.tiers["working"].capacity == Settings().memory.tiers["working"].capacity
    assert s.allowed_roots == [Path("/tmp").resolve()]


def test_environment_changes_one_key_of_a_file_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[memory.tiers.working]\nttl_s = 5\ncapacity = 7\n[http]\nport = 1111\n", encoding="utf-8")
    monkeypatch.setenv("MCP_GEMMA_MEMORY__TIERS__WORKING__TTL_S", "9")
    s = load_settings(cfg, http={"host": "127.0.0.9"})
    assert (s.memory.tiers["working"].ttl_s, s.memory.tiers["working"].capacity) == (9.0, 7)
    assert (s.http.port, s.http.host) == (1111, "127.0.0.9")


def test_redis_url_alias_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_GEMMA_REDIS_URL", "redis://prefixed:1/0")
    assert load_settings().redis_url == SecretStr("redis://prefixed:1/0")
    monkeypatch.setenv("REDIS_URL", "redis://plain:1/0")  # the well-known name comes first, as before
    assert load_settings().redis_url == SecretStr("redis://plain:1/0")
    assert load_settings(redis_url="redis://flag:1/0").redis_url == SecretStr("redis://flag:1/0")


@pytest.mark.parametrize(
    ("name", "value", "example"),
    [
        ("MCP_GEMMA_ALLOWED_ROOTS", "/data", """MCP_GEMMA_ALLOWED_ROOTS='["a", "b"]'"""),
        ("MCP_GEMMA_SERVER__PLUGINS", "pkg.mod", """MCP_GEMMA_SERVER__PLUGINS='["a", "b"]'"""),
        ("MCP_GEMMA_HTTP", "port=1", """MCP_GEMMA_HTTP='{"key": 1}'"""),
    ],
)
def test_json_setting_that_is_not_json_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, example: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert str(err.value).startswith(f"invalid settings (environment): {name} takes JSON, e.g. {example} (")


def test_empty_or_wrong_environment_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_GEMMA_MEMORY__CONSOLIDATION_INTERVAL_S", "")
    with pytest.raises(ConfigError, match=r"memory\.consolidation_interval_s: Input should be a valid num"):
        load_settings()


def test_serve_with_a_bad_environment_value_says_what_to_fix(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GEMMA_")}
    env |= {"MCP_GEMMA_ALLOWED_ROOTS": "/data", "MCP_GEMMA_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "mcp_gemma", "serve"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (2, "")  # stdout carries protocol only: nothing here
    assert done.stderr.splitlines() == [
        "mcp-gemma: error: invalid settings (environment): MCP_GEMMA_ALLOWED_ROOTS takes JSON, e.g. "
        """MCP_GEMMA_ALLOWED_ROOTS='["a", "b"]' (Expecting value)"""
    ]
