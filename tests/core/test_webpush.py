"""Web Push's pure parts: the VAPID key kept once, and what a subscription must be before it is kept."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from livecommerce.config import ConfigError, build_config
from livecommerce.webpush import (
    VapidKeys,
    auth_problem,
    b64url_decode,
    b64url_encode,
    endpoint_problem,
    load_or_create_vapid,
    p256dh_problem,
)


def test_the_vapid_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    config = build_config({"push": {"vapid_key_file": str(tmp_path / "keys" / "vapid")}})
    first = load_or_create_vapid(config)
    again = load_or_create_vapid(config)
    assert first.public_key == again.public_key
    assert (tmp_path / "keys" / "vapid").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["vapid"]  # nothing left aside
    assert len(b64url_decode(first.public_key)) == 65 and b64url_decode(first.public_key)[0] == 4


def test_a_configured_vapid_key_is_used_and_a_wrong_one_named(tmp_path: Path) -> None:
    keys = VapidKeys.generate()
    config = build_config({"push": {"vapid_private_key": keys.private_raw,
                                    "vapid_key_file": str(tmp_path / "unused")}})
    assert load_or_create_vapid(config).public_key == keys.public_key
    assert not (tmp_path / "unused").exists()
    with pytest.raises(ConfigError, match=r"push\.vapid_private_key"):
        load_or_create_vapid(build_config({"push": {"vapid_private_key": "too-short"}}))


def test_push_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"push\.subject"):
        build_config({"push": {"subject": "http://example.com"}})
    with pytest.raises(ConfigError, match=r"push\.retries"):
        build_config({"push": {"retries": 50}})
    assert build_config({"push": {"subject": "mailto:ops@example.com"}}).push.subject == "mailto:ops@example.com"


@pytest.mark.parametrize(("endpoint", "loopback_allowed", "problem"), [
    ("https://fcm.googleapis.com/fcm/send/abc", False, None),
    ("https://web.push.apple.com/QG9-abc", False, None),
    ("http://fcm.googleapis.com/fcm/send/abc", False, "https"),
    ("http://127.0.0.1:8000/push/x", False, "https"),
    ("https://127.0.0.1/push/x", False, "public address"),
    ("https://localhost/push/x", False, "public address"),
    ("http://127.0.0.1:8000/push/x", True, None),
    ("http://localhost:8000/push/x", True, None),
    ("http://[::1]:8000/push/x", True, None),
    ("http://example.com/push/x", True, "https"),
    ("https://192.168.0.4/x", False, "public address"),
    ("https://user:pw@push.example.com/x", False, "user name"),
    ("https://push.example.com:notaport/x", False, "URL"),
    ("ftp://push.example.com/x", False, "https"),
    ("https://push.example.com/" + "x" * 3000, False, "at most"),
])
def test_an_endpoint_must_be_a_push_services(endpoint: str, loopback_allowed: bool, problem: str | None) -> None:
    found = endpoint_problem(endpoint, loopback_allowed)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_the_keys_of_a_subscription_have_their_sizes() -> None:
    point = b64url_decode(VapidKeys.generate().public_key)
    assert p256dh_problem(b64url_encode(point)) is None
    assert p256dh_problem(b64url_encode(point) + "==") is None  # padded is fine
    assert "65 bytes" in (p256dh_problem(b64url_encode(point[:-1])) or "")
    assert "P-256" in (p256dh_problem(b64url_encode(b"\x04" + b"\x00" * 64)) or "")
    assert "base64url" in (p256dh_problem(base64.b64encode(point).decode() + "+/") or "")
    assert auth_problem(b64url_encode(b"s" * 16)) is None
    assert "16 bytes" in (auth_problem(b64url_encode(b"s" * 12)) or "")
    assert "base64url" in (auth_problem("a b") or "")
