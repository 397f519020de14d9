"""Telegram notifications against a local stand-in for the Bot API (no network, no mock of requests)."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from recsys.config import Settings
from recsys.pipeline.airflow import notify_failure, notify_success, send_telegram, telegram_message
from tests.airflow.conftest import FakeTelegram

TOKEN = "4242:secret-token"
START = datetime(2015, 9, 10, 22, 45, tzinfo=UTC)


def settings(
    tmp_path: Path, base_url: str, token: str | None = TOKEN, chat: str | None = "-1001"
) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        telegram_token=token,
        telegram_chat_id=chat,
        telegram_api_base_url=base_url,
    )


def failure_context() -> dict[str, Any]:
    ti = SimpleNamespace(
        task_id="check_als_model",
        dag_id="4_prepare_personalized_recommendations",
        start_date=START,
        end_date=START.replace(second=2),
    )
    return {
        "dag": SimpleNamespace(dag_id="4_prepare_personalized_recommendations"),
        "run_id": "scheduled__2015-09-10T22:45:00+00:00",
        "ti": ti,
        "exception": RuntimeError("no als model has been published"),
    }


@pytest.fixture(autouse=True)
def _clean(telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    telegram.received.clear()
    telegram.status = 200
    for name in ("RECSYS_TELEGRAM_TOKEN", "RECSYS_TELEGRAM_CHAT_ID", "RECSYS_TELEGRAM_API_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_message_is_sent_to_the_bot_api(tmp_path: Path, telegram: FakeTelegram) -> None:
    assert send_telegram("hello", settings(tmp_path, telegram.url)) is True
    assert telegram.received == [(f"/bot{TOKEN}/sendMessage", {"chat_id": "-1001", "text": "hello"})]


def test_failure_callback_names_dag_run_task_duration_and_error(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("RECSYS_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("RECSYS_TELEGRAM_CHAT_ID", "-1001")
    monkeypatch.setenv("RECSYS_TELEGRAM_API_BASE_URL", telegram.url + "/")
    notify_failure(failure_context())
    [(path, body)] = telegram.received
    assert path == f"/bot{TOKEN}/sendMessage"
    assert body["chat_id"] == "-1001"
    assert body["text"].splitlines() == [
        "recsys: DAG 4_prepare_personalized_recommendations FAILED",
        "run: scheduled__2015-09-10T22:45:00+00:00",
        "task: check_als_model",
        "duration: 2.0 s",
        "error: RuntimeError: no als model has been published",
    ]


def test_success_message_uses_the_run_duration() -> None:
    dag_run = SimpleNamespace(
        dag_id="3_prepare_default_recommendations",
        run_id="scheduled__x",
        start_date=START,
        end_date=START.replace(minute=46, second=30),
    )
    context = {"dag_run": dag_run, "run_id": "scheduled__x", "ti": SimpleNamespace(task_id="publish")}
    assert telegram_message(context, failed=False).splitlines() == [
        "recsys: DAG 3_prepare_default_recommendations succeeded",
        "run: scheduled__x",
        "last task: publish",
        "duration: 90.0 s",
    ]


@pytest.mark.parametrize(("token", "chat"), [(None, "-1001"), (TOKEN, None), ("", "-1001"), (TOKEN, "")])
def test_nothing_is_sent_unless_token_and_chat_are_set(
    tmp_path: Path, telegram: FakeTelegram, token: str | None, chat: str | None
) -> None:
    assert send_telegram("hello", settings(tmp_path, telegram.url, token, chat)) is False
    assert telegram.received == []


def test_callback_without_configuration_does_nothing(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    notify_success({"run_id": "x"})
    assert telegram.received == []


def test_api_error_is_logged_not_raised(
    tmp_path: Path, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    telegram.status = 500
    with caplog.at_level(logging.WARNING, logger="recsys.pipeline.airflow"):
        assert send_telegram("hello", settings(tmp_path, telegram.url)) is False
    assert len(telegram.received) == 1
    assert "Telegram notification not sent" in caplog.text
    assert TOKEN not in caplog.text  # the token is part of the URL; it must not reach the logs


def test_unreachable_api_does_not_fail_the_callback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECSYS_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("RECSYS_TELEGRAM_CHAT_ID", "-1001")
    monkeypatch.setenv("RECSYS_TELEGRAM_API_BASE_URL", f"http://127.0.0.1:{port}")
    with caplog.at_level(logging.WARNING, logger="recsys.pipeline.airflow"):
        notify_failure(failure_context())
    assert "Telegram notification not sent" in caplog.text
    assert TOKEN not in caplog.text


def test_broken_context_does_not_fail_the_callback(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            raise KeyError(key)

    monkeypatch.setenv("RECSYS_TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("RECSYS_TELEGRAM_CHAT_ID", "-1001")
    monkeypatch.setenv("RECSYS_TELEGRAM_API_BASE_URL", telegram.url)
    notify_success(Broken())
    assert telegram.received == []
    assert "could not build or send the Telegram notification" in caplog.text
