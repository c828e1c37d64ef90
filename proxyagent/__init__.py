"""proxyagent: the meshui sidecar (data plane).

Never imports Django or ``meshui``; the control plane and the agent meet only
through the protobuf contract in ``proxyagent.protocol``.
"""

__version__ = "0.1.0"
