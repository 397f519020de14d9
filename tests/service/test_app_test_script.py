"""``fast_api_service/app_test.py`` run as documented against a live service."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.service.conftest import API_KEY, SERVICE_DIR, LiveService, PublishedData


def run_app_test(
    service: LiveService, log: Path, api_key: str | None, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RECSYS_API_KEY"}
    if api_key is not None:
        env["RECSYS_API_KEY"] = api_key
    return subprocess.run(
        [sys.executable, "app_test.py", "--base-url", service.url, "--log", str(log), *extra],
        cwd=SERVICE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_scenario_passes_and_is_logged(
    sqlite_service: LiveService, published_data: PublishedData, tmp_path: Path
) -> None:
    log = tmp_path / "test_service.log"
    user = published_data.ranked_user(900)
    result = run_app_test(sqlite_service, log, API_KEY, "--user-with-history", str(user))
    assert result.returncode == 0, result.stdout + result.stderr
    text = log.read_text()
    assert text == result.stdout
    for scenario in (
        "[PASS] health",
        "[PASS] cold user gets popular items",
        f"[PASS] user {user} with history gets personalised items",
        f"[PASS] user {user} with new online events gets online i2i items",
        "[PASS] unknown item is 404",
        "[PASS] bad input is 422",
    ):
        assert scenario in text
    assert text.rstrip().endswith("Summary: 6 pass, 0 fail, 0 skip")
    assert "POST /events -> 201" in text


def test_finds_a_user_and_skips_events_without_a_key(sqlite_service: LiveService, tmp_path: Path) -> None:
    log = tmp_path / "test_service.log"
    result = run_app_test(sqlite_service, log, None)
    assert result.returncode == 0, result.stdout + result.stderr
    text = log.read_text()
    assert "[SKIP]" in text and "RECSYS_API_KEY is not set" in text
    assert text.rstrip().endswith("Summary: 5 pass, 0 fail, 1 skip")


def test_a_failing_expectation_fails_the_run(sqlite_service: LiveService, tmp_path: Path) -> None:
    # A "user with history" that is in fact cold must be reported as a failure.
    log = tmp_path / "test_service.log"
    result = run_app_test(sqlite_service, log, API_KEY, "--user-with-history", str(10**14))
    assert result.returncode == 1
    assert "[FAIL] user 100000000000000 with history gets personalised items" in log.read_text()
