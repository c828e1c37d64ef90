"""``python -m proxyagent run``: flags, each also read from ``PROXYAGENT_<FLAG>``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from proxyagent import __version__
from proxyagent.agent import Agent, AgentConfig

ENV_PREFIX = "PROXYAGENT_"


def _env_default(flag: str, default: object) -> object:
    return os.environ.get(ENV_PREFIX + flag.upper().replace("-", "_"), default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m proxyagent", description="The meshui sidecar proxy agent.")
    parser.add_argument("--version", action="version", version=f"proxyagent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run the sidecar in front of one app instance",
        description="Every flag can also be set as an environment variable PROXYAGENT_<FLAG> "
        "(PROXYAGENT_APP_PORT, for example).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )

    def flag(name: str, default: object, help_text: str, kind: type = str, required: bool = False) -> None:
        value = _env_default(name, default)
        run.add_argument(f"--{name}", type=kind, default=value, required=required and value is None, help=help_text)

    flag("service", None, "the service this instance belongs to", required=True)
    flag("namespace", "default", "the service's namespace")
    flag("app-port", None, "the local app's port (inbound traffic goes there)", int, required=True)
    flag("version", "v1", "the workload version label")
    flag("workload", "", "the workload name (default <service>-<version>)")
    flag("service-account", "default", "the workload's service account (its identity)")
    flag("host", "127.0.0.1", "the address other agents reach this one on (inbound and admin gRPC bind here)")
    flag("app-host", "127.0.0.1", "the local app's address")
    flag("control-plane", "127.0.0.1:15010", "the control plane's MeshControl gRPC address")
    flag("outbound-port", 15001, "outbound listener on 127.0.0.1 (the app calls out through it)", int)
    flag("inbound-port", 15006, "inbound listener (other agents call in through it)", int)
    flag("admin-port", 15000, "admin gRPC (AgentAdmin) port", int)
    flag("admin-http-port", 15020, "admin HTTP port: /metrics, /healthz, /readyz", int)
    flag("request-timeout", 15.0, "default request timeout in seconds", float)
    flag("drain-timeout", 10.0, "seconds to let in-flight requests finish on shutdown", float)
    flag("idle-timeout", 60.0, "seconds a keep-alive connection may wait for its next request", float)
    flag("otlp-endpoint", None, "OTLP/gRPC endpoint for spans and metrics (default: the control plane; empty: none)")
    flag("metrics-interval", 1.0, "seconds between OTLP metric exports (the live graph lags by about this)", float)
    flag("trace-sampling", 1.0, "share of new traces to record, 0 to 1 (callers' decisions are kept)", float)
    flag("native-relay", "on", "serve plain HTTP/1.1 exchanges with the native relay where it is built: on or off")
    identity = run.add_argument_group(
        "workload identity and mutual TLS",
        "The agent makes its key in memory (never written, never sent), obtains a certificate for "
        "spiffe://<trust domain>/ns/<namespace>/sa/<service account> from the control plane with the join token, "
        "renews it at half-life, and talks mutual TLS to other sidecars and to the control plane's pushes.",
    )

    def identity_flag(name: str, default: object, help_text: str) -> None:
        identity.add_argument(f"--{name}", default=_env_default(name, default), help=help_text)

    identity_flag(
        "join-token",
        "",
        "the join token proving the workload's identity for its first certificate (`manage.py jointoken create`); "
        # "%(default).0s": the help shows no default, which would be the token itself when set in the environment.
        "prefer PROXYAGENT_JOIN_TOKEN, since other users of the machine can read command lines%(default).0s",
    )
    identity_flag(
        "kubernetes-token-file",
        "",
        "cluster mode: the pod's projected service-account token (audience: the control plane's "
        "MESH_KUBERNETES_TOKEN_AUDIENCE), proving the identity instead of a join token; read again at each join",
    )
    identity_flag(
        "trust-bundle",
        "",
        "a PEM file of the roots that verify the control plane's TLS on first contact (`manage.py trustbundle`); "
        "given, the control-plane channel is TLS",
    )
    identity_flag("trust-domain", "cluster.local", "the mesh's trust domain (the control plane's MESH_TRUST_DOMAIN)")
    identity_flag(
        "mtls",
        "auto",
        "mutual TLS between sidecars and for AgentAdmin: on, off, or auto (on with a join token or a Kubernetes token)",
    )
    identity_flag(
        "control-plane-identity",
        "",
        "the only SPIFFE id allowed to call AgentAdmin in mTLS mode "
        "(default spiffe://<trust domain>/ns/mesh-system/sa/meshui-control)",
    )
    flag("log-level", "INFO", "log level")
    return parser


def _install_fast_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.trace_sampling <= 1.0:
        parser.error("--trace-sampling must be between 0 and 1")
    if args.metrics_interval <= 0:
        parser.error("--metrics-interval must be positive")
    if args.native_relay not in ("on", "off"):
        parser.error("--native-relay must be on or off")
    if args.mtls not in ("on", "off", "auto"):
        parser.error("--mtls must be on, off or auto")
    trust_bundle = b""
    if args.trust_bundle:
        try:
            trust_bundle = Path(args.trust_bundle).read_bytes()
        except OSError as exc:
            parser.error(f"--trust-bundle: {exc}")
    logging.basicConfig(level=str(args.log_level).upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = AgentConfig(
        service=args.service,
        namespace=args.namespace,
        app_port=args.app_port,
        version=args.version,
        workload=args.workload,
        service_account=args.service_account,
        host=args.host,
        app_host=args.app_host,
        control_plane=args.control_plane,
        outbound_port=args.outbound_port,
        inbound_port=args.inbound_port,
        admin_port=args.admin_port,
        admin_http_port=args.admin_http_port,
        request_timeout_s=args.request_timeout,
        drain_timeout_s=args.drain_timeout,
        idle_timeout_s=args.idle_timeout,
        otlp_endpoint=args.otlp_endpoint,
        trace_sampling=args.trace_sampling,
        metrics_interval_s=args.metrics_interval,
        native_relay=args.native_relay == "on",
        join_token=args.join_token,
        kubernetes_token_file=args.kubernetes_token_file,
        trust_bundle=trust_bundle,
        trust_domain=args.trust_domain,
        mtls=None if args.mtls == "auto" else args.mtls == "on",
        control_plane_identity=args.control_plane_identity,
    )
    try:
        config.check()
    except ValueError as exc:
        parser.error(str(exc))
    _install_fast_loop()
    try:
        asyncio.run(Agent(config).run_until_signalled())
    except OSError as exc:
        print(f"proxyagent: {exc}", file=sys.stderr)
        return 1
    return 0
