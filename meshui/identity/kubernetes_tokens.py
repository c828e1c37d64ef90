"""Cluster mode's bootstrap credential: a pod's projected service-account token, vouched for by TokenReview.

The agent sends the token its pod was given for the audience ``MESH_KUBERNETES_TOKEN_AUDIENCE``
(a projected volume, so a token minted for the API server or another service is useless here);
the API server says whether it is valid, for which audiences, and whose it is
(``system:serviceaccount:<namespace>:<name>``). The identity granted is exactly that service
account: the token names no other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

_PREFIX = "system:serviceaccount:"
# Projected tokens are a few hundred bytes to a few KiB; anything larger is not one.
MAX_TOKEN_BYTES = 16384


class TokenReviewFailed(RuntimeError):  # noqa: N818 - the API server's answer, not ours
    """The API server could not be asked (unreachable, forbidden): not the token's fault."""


@dataclass(frozen=True)
class ServiceAccount:
    namespace: str
    name: str


def _api_client() -> ApiClient:
    # Imported here: the client library costs a second to import, and only cluster mode needs it.
    from kubernetes import client, config

    if settings.MESH_KUBECONFIG:
        return config.new_client_from_config(config_file=settings.MESH_KUBECONFIG)
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def review(token: str) -> ServiceAccount | None:
    """The service account ``token`` belongs to, or ``None`` when the API server does not vouch for it for our
    audience. Raises ``TokenReviewFailed`` when the API server cannot be asked."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if not token or len(token) > MAX_TOKEN_BYTES:
        return None
    audience = settings.MESH_KUBERNETES_TOKEN_AUDIENCE
    body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=[audience]))
    try:
        with _api_client() as api:
            result: Any = client.AuthenticationV1Api(api).create_token_review(body, _request_timeout=10)
    except ApiException as exc:
        raise TokenReviewFailed(f"TokenReview failed: {exc.status} {exc.reason}") from None
    except (HTTPError, OSError) as exc:
        raise TokenReviewFailed(f"the Kubernetes API server is unreachable: {exc}") from None
    status = result.status
    if status is None or not status.authenticated or status.user is None:
        return None
    # An API server that ignores audiences answers without them: such a token could be any token of the pod.
    if audience not in (status.audiences or []):
        return None
    username: str = status.user.username or ""
    if not username.startswith(_PREFIX):
        return None
    namespace, _, name = username.removeprefix(_PREFIX).partition(":")
    if not namespace or not name or ":" in name:
        return None
    return ServiceAccount(namespace, name)
