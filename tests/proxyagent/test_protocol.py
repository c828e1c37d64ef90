"""The .proto files are the contract; the generated code must match them."""

from __future__ import annotations

from proxyagent.protocol import generate
from proxyagent.protocol.v1 import admin_pb2_grpc, control_pb2, control_pb2_grpc, snapshot_pb2


def test_generated_code_is_current() -> None:
    assert generate.stale_files() == [], "run `make proto` and commit the result"


def test_messages_round_trip_on_the_wire() -> None:
    snapshot = snapshot_pb2.Snapshot(
        version=7,
        destinations=[
            snapshot_pb2.Destination(
                service="reviews",
                namespace="shop",
                load_balancer=snapshot_pb2.LOAD_BALANCER_LEAST_REQUEST,
                endpoints=[snapshot_pb2.Endpoint(address="127.0.0.1", port=15106, workload="reviews-v2", weight=3)],
            )
        ],
    )
    reply = control_pb2.RegisterResponse(agent_id="a", snapshot=snapshot, heartbeat_interval_ms=5000)
    decoded = control_pb2.RegisterResponse.FromString(reply.SerializeToString())
    assert decoded == reply
    assert decoded.snapshot.destinations[0].endpoints[0].workload == "reviews-v2"


def test_the_services_are_in_package_mesh_v1() -> None:
    assert control_pb2.DESCRIPTOR.package == "mesh.v1"
    assert control_pb2.DESCRIPTOR.services_by_name["MeshControl"].full_name == "mesh.v1.MeshControl"
    assert hasattr(control_pb2_grpc, "MeshControlStub")
    assert hasattr(admin_pb2_grpc, "AgentAdminServicer")
