"""The OpenAPI document is the contract, checked from outside: schemathesis (every check it has) runs against
the live app's `/api/v1/openapi.json`, signed in as each role, and must find nothing.

Bounded to fit the test command (`LIVECOMMERCE_FUZZ_EXAMPLES` cases per operation, 8 by default); before a
release run it longer, as docs/security.md says:

    LIVECOMMERCE_FUZZ_EXAMPLES=200 LIVECOMMERCE_FUZZ_COVERAGE=all .venv/bin/python -m pytest tests/core/test_api_fuzz.py

The coverage phase (boundary values for every parameter) runs as staff and anonymously; the other roles run
the examples, fuzzing and stateful phases.

The routes that end the session being fuzzed with (signing out, a new password, ending sessions) are left out
of the signed-in runs — they would sign the run out, and their own tests cover them — and run anonymously.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from livecommerce.auth import COOKIE
from tests.conftest import BACKENDS
from tests.support import World, cookie_of, csrf, sign_in

EXAMPLES = int(os.environ.get("LIVECOMMERCE_FUZZ_EXAMPLES", "8"))
SEED = os.environ.get("LIVECOMMERCE_FUZZ_SEED", "1313")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")  # the expected statuses, and our own check
ROOT = Path(__file__).resolve().parents[2]  # where `tests.core.fuzz_checks` is imported from
COVERAGE_ROLES = ("staff", "anonymous")
# Routes that end the caller's session (or every session of an account): not fuzzed while signed in.
SESSION_ENDING = ("logout", "logout_everywhere", "change_password", "end_user_sessions")


@pytest.fixture(params=BACKENDS[-1:])
def backend(request: pytest.FixtureRequest) -> str:
    """One backend is enough for the fuzzing: PostgreSQL and Redis when they are configured."""
    return str(request.param)


async def _credentials(client: TestClient, who: str) -> tuple[str | None, str]:
    if who == "anonymous":
        return None, await csrf(client)
    if who == "guest":
        token = await csrf(client)
        resp = await client.post("/api/v1/auth/guest", json={"nickname": "구경꾼"}, headers={"X-CSRF-Token": token})
        assert resp.status == 201, await resp.text()
        return cookie_of(client), str((await resp.json())["csrf_token"])
    token = await sign_in(client, who)
    return cookie_of(client), token


@pytest.mark.parametrize("who", ["staff", "host", "merchant", "viewer", "guest", "anonymous"])
async def test_the_api_keeps_its_document_under_fuzzing(server: TestServer, http: TestClient, world: World,
                                                        who: str, tmp_path: Path) -> None:
    if not SCHEMATHESIS.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    cookie, token = await _credentials(http, who)
    # The anonymous run keeps a session cookie too (a CSRF token needs one), with nobody signed in.
    cookie = cookie or cookie_of(http)
    base = f"http://127.0.0.1:{server.port}"
    args = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{base}/api/v1/openapi.json", "--checks", "all",
            "--max-examples", str(EXAMPLES), "--seed", SEED, "--workers", "1", "--no-shrink",
            "--phases", ",".join(_phases(who)), "--suppress-health-check", "all", "--request-timeout", "30",
            "--generation-database", ":memory:",
            "-H", f"Cookie: {COOKIE}={cookie}", "-H", f"X-CSRF-Token: {token}",
            "--report", "junit", "--report-junit-path", str(tmp_path / "junit.xml")]
    if who != "anonymous":
        args += ["--exclude-operation-id-regex", "^(" + "|".join(SESSION_ENDING) + ")$"]
    proc = await asyncio.create_subprocess_exec(*args, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT,
                                                env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false",
                                                     "PYTHONPATH": str(ROOT)})
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    summary = _summary(text)
    print(f"\nschemathesis as {who}: {summary}")
    assert proc.returncode == 0, text[-20000:]
    # it really ran: operations were tested, and none of them failed
    assert "passed" in summary, text[-5000:]


def _phases(who: str) -> list[str]:
    """Every phase for the roles that reach the most (staff) and the public surface (anonymous); the others
    skip the coverage phase, whose ~3,500 boundary cases per role meet the same validation again (about 20 s
    each); LIVECOMMERCE_FUZZ_COVERAGE=all runs it for every role."""
    coverage = who in COVERAGE_ROLES or os.environ.get("LIVECOMMERCE_FUZZ_COVERAGE") == "all"
    return ["examples", *(["coverage"] if coverage else []), "fuzzing", "stateful"]


def _summary(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    wanted = [line for line in lines if " generated, " in line or line.startswith(("Tested:", "Seed:"))]
    return " | ".join(wanted) if wanted else (lines[-1] if lines else "")
