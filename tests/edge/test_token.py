"""Issue 25: only a request carrying the callback token reaches the callback's work; the
token rotates without losing tasks in flight; the account is checked; failures say nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from qcflow.tools.fc_local import context_for, http_event, load_handler_module
from tests.push.conftest import FC_CREDS, push_world
from tests.test_callback_function import KEY, PATH, TOKEN, _query

PREVIOUS = "previous-callback-token-0123456789ab"


def _logged(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    ("path", "accepted"),
    [
        (PATH, True),
        (f"/sca-callback/{PREVIOUS}", True),  # the token before the last rotation: tasks in flight carry it
        ("/sca-callback/older-callback-token-0123456789abcdef", False),  # the one before that
        ("/sca-callback", False),  # no token at all
        (f"/sca-callback/{TOKEN[:-1]}", False),
        (f"/sca-callback/{TOKEN}x", False),
        ("/", False),
    ],
)
def test_only_the_current_or_the_previous_token_gets_past_the_edge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: str, accepted: bool
) -> None:
    with push_world(
        tmp_path, monkeypatch, QCFLOW_CALLBACK_TOKEN=TOKEN, QCFLOW_CALLBACK_PREVIOUS_TOKEN=PREVIOUS
    ) as world:
        callback = load_handler_module("callback")
        world.modules.append(callback)
        capsys.readouterr()
        answer = callback.handler(
            http_event("GET", path, _query("NO-SUCH-TASK", int(time.time() * 1000))), context_for("callback", FC_CREDS)
        )
        logged = _logged(capsys)
        calls = world.server.app.snapshot()["answers"]
        get_results = sum(n for key, n in calls.items() if key.startswith("GetResult"))
        if accepted:
            assert answer["statusCode"] == 200 and get_results == 1
        else:
            assert answer["statusCode"] == 404 and json.loads(answer["body"]) == {"error": "not found"}
            assert get_results == 0, "a refused token costs no GetResult"
            assert any(line.get("event") == "callback_refused" and line.get("reason") == "token" for line in logged)
        text = json.dumps(logged)
        assert TOKEN not in text and PREVIOUS not in text, "no token in the logs"


def test_without_a_token_every_callback_is_refused_and_push_sends_no_callback_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with push_world(tmp_path, monkeypatch, QCFLOW_PUSH_CALLBACK_URL="http://127.0.0.1:9/sca-callback") as world:
        callback = load_handler_module("callback")
        world.modules.append(callback)
        answer = callback.handler(
            http_event("GET", PATH, _query("T-1", int(time.time() * 1000))), context_for("callback", FC_CREDS)
        )
        assert answer["statusCode"] == 404
        refused = [line for line in _logged(capsys) if line.get("event") == "callback_refused"]
        assert refused and refused[0]["reason"] == "token_unset" and refused[0]["level"] == "ERROR"
        world.put_recording(KEY)
        assert world.deliver(world.instance(), KEY) == {"records": 1, "submitted": 1}
        assert "push_callback_disabled" in {line.get("event") for line in _logged(capsys)}
        assert world.server.app.callbacks.snapshot()["scheduled"] == 0, "no callbackUrl was sent"


def test_a_callback_for_another_account_is_refused_when_the_account_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with push_world(tmp_path, monkeypatch, QCFLOW_CALLBACK_TOKEN=TOKEN, QCFLOW_SCA_ALI_UID="1688000000000002") as world:
        callback = load_handler_module("callback")
        world.modules.append(callback)
        answer = callback.handler(
            http_event("GET", PATH, _query("T-1", int(time.time() * 1000))), context_for("callback", FC_CREDS)
        )
        assert answer["statusCode"] == 400 and json.loads(answer["body"]) == {"error": "ali_uid"}


def test_an_unexpected_failure_answers_a_plain_500(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with push_world(tmp_path, monkeypatch, QCFLOW_CALLBACK_TOKEN=TOKEN) as world:
        callback = load_handler_module("callback")
        world.modules.append(callback)

        async def boom(*args: object, **kwargs: object) -> None:
            raise KeyError("internal detail")

        monkeypatch.setattr(callback.edge, "handle", boom)
        answer = callback.handler(
            http_event("GET", PATH, _query("T-1", int(time.time() * 1000))), context_for("callback", FC_CREDS)
        )
        assert answer["statusCode"] == 500 and json.loads(answer["body"]) == {"error": "internal error"}


def test_the_sandbox_calls_back_on_the_token_path_push_sent() -> None:
    """SCA appends its parameters to callbackUrl; the path (the token) must come back as sent."""
    from urllib.parse import urlsplit

    from qcflow.tools.sandbox.callbacks import callback_url

    url = callback_url(f"https://cb.example{PATH}", "T-1", 1_700_000_000_000, "1688000000000001", "sig")
    assert urlsplit(url).path == PATH and "taskId=T-1" in urlsplit(url).query


def test_push_builds_the_callback_url_from_the_base_and_the_token() -> None:
    from qcflow.push.pusher import _callback_url

    assert _callback_url("https://fn.example", TOKEN) == f"https://fn.example/sca-callback/{TOKEN}"
    assert _callback_url("https://fn.example/sca-callback/", TOKEN) == f"https://fn.example/sca-callback/{TOKEN}"
    assert _callback_url("https://fn.example", None) is None and _callback_url(None, TOKEN) is None


def test_empty_values_from_s_yaml_mean_unset() -> None:
    # s.yaml passes ${env('QCFLOW_CALLBACK_PREVIOUS_TOKEN','')} outside a rotation: "" must not be a bad token
    from qcflow.config import load_settings

    settings = load_settings(callback_token="", callback_previous_token=" ", sca_ali_uid="")
    assert settings.callback.token is None
    assert settings.callback.previous_token is None
    assert settings.callback.expected_ali_uid is None
