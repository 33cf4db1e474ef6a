"""Configuration: defaults, environment overrides, and refusals that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from livecommerce.config import Config, ConfigError, build_config, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_server() -> None:
    c = build_config({}, env={})
    assert c.database.url.startswith("sqlite+aiosqlite:///")
    assert c.redis.url == ""
    assert c.schedule.timezone == "Asia/Seoul"
    assert c.schedule.weekdays == ["MO", "WE"]
    assert c.schedule.duration_minutes == 60
    assert c.i18n.default_locale == "ko"


def test_shipped_config_toml_is_valid_and_documents_every_key() -> None:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    c = load_config(ROOT / "config.toml", env={})
    assert c == Config()  # the file shows the defaults
    import dataclasses

    for section in dataclasses.fields(Config):
        assert f"[{section.name}]" in text
        for key in dataclasses.fields(getattr(c, section.name)):
            assert f"\n{key.name} = " in text, f"{section.name}.{key.name} is not documented"


def test_environment_overrides_each_type() -> None:
    env = {
        "LIVECOMMERCE_SERVER_PORT": "9000",
        "LIVECOMMERCE_SERVER_TRUST_PROXY": "true",
        "LIVECOMMERCE_SERVER_SHUTDOWN_TIMEOUT": "2.5",
        "LIVECOMMERCE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "LIVECOMMERCE_SCHEDULE_WEEKDAYS": "TU, TH",
    }
    c = build_config({"server": {"port": 1234}}, env=env)
    assert c.server.port == 9000
    assert c.server.trust_proxy is True
    assert c.server.shutdown_timeout == 2.5
    assert c.redis.url == "redis://127.0.0.1:6379/0"
    assert c.schedule.weekdays == ["TU", "TH"]


@pytest.mark.parametrize(("raw", "env", "key"), [
    ({"server": {"prot": 1}}, {}, "server.prot"),
    ({"nonsense": {}}, {}, "nonsense"),
    ({"server": {"port": "8080"}}, {}, "server.port"),
    ({"server": {"port": 70000}}, {}, "server.port"),
    ({"database": {"url": "mysql://x"}}, {}, "database.url"),
    ({"schedule": {"timezone": "Mars/Olympus"}}, {}, "schedule.timezone"),
    ({"schedule": {"weekdays": ["MO", "XX"]}}, {}, "schedule.weekdays"),
    ({"schedule": {"start_time": "25:00"}}, {}, "schedule.start_time"),
    ({"schedule": {"duration_minutes": 500}}, {}, "schedule.duration_minutes"),
    ({"server": {"allowed_origins": ["*"]}}, {}, "server.allowed_origins"),
    ({"i18n": {"default_locale": "fr"}}, {}, "i18n.default_locale"),
    ({"push": {"timeout_seconds": 30.0}}, {}, "push.resend_after_seconds"),  # 120 s: a sender may take 184.5
    ({}, {"LIVECOMMERCE_SERVER_PORT": "eighty"}, "LIVECOMMERCE_SERVER_PORT"),
    ({}, {"LIVECOMMERCE_SERVER_TRUST_PROXY": "maybe"}, "LIVECOMMERCE_SERVER_TRUST_PROXY"),
    ({}, {"LIVECOMMERCE_SERVER_PROT": "1"}, "LIVECOMMERCE_SERVER_PROT"),
])
def test_bad_values_name_the_key(raw: dict, env: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(raw, env=env)
    assert info.value.key == key
    assert key in str(info.value) and "expected" in str(info.value)


def test_server_refuses_to_start_with_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[schedule]\nduration_minutes = "an hour"\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "livecommerce.cli", "serve", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert "schedule.duration_minutes" in proc.stderr and "an integer" in proc.stderr
