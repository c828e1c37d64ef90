"""python -m proxyagent run: flags, and the same settings from PROXYAGENT_* variables."""

from __future__ import annotations

import subprocess
import sys

import pytest

from proxyagent.cli import build_parser, main


def test_flags_default_to_the_maps_ports() -> None:
    args = build_parser().parse_args(["run", "--service", "web", "--app-port", "8080"])
    assert (args.outbound_port, args.inbound_port, args.admin_port, args.admin_http_port) == (
        15001,
        15006,
        15000,
        15020,
    )
    assert args.control_plane == "127.0.0.1:15010"
    assert args.namespace == "default"


def test_every_flag_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXYAGENT_SERVICE", "reviews")
    monkeypatch.setenv("PROXYAGENT_APP_PORT", "9080")
    monkeypatch.setenv("PROXYAGENT_INBOUND_PORT", "16006")
    monkeypatch.setenv("PROXYAGENT_REQUEST_TIMEOUT", "2.5")
    monkeypatch.setenv("PROXYAGENT_OTLP_ENDPOINT", "")
    args = build_parser().parse_args(["run"])
    assert (args.service, args.app_port, args.inbound_port, args.request_timeout) == ("reviews", 9080, 16006, 2.5)
    assert args.otlp_endpoint == ""


def test_a_flag_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXYAGENT_APP_PORT", "9080")
    assert build_parser().parse_args(["run", "--service", "x", "--app-port", "7000"]).app_port == 7000


def test_bad_values_are_refused_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--service", "web", "--app-port", "8080", "--trace-sampling", "2"])
    assert "--trace-sampling must be between 0 and 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--service", "web", "--app-port", "eighty"])
    assert "invalid int value: 'eighty'" in capsys.readouterr().err


def test_help_documents_every_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "proxyagent", "run", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    for flag in (
        "--service",
        "--namespace",
        "--app-port",
        "--version",
        "--control-plane",
        "--outbound-port",
        "--inbound-port",
        "--admin-port",
        "--admin-http-port",
        "--host",
        "--otlp-endpoint",
        "--trace-sampling",
    ):
        assert flag in result.stdout
    assert "PROXYAGENT_" in result.stdout
