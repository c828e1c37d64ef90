from django.urls import include, path
from rest_framework.routers import DefaultRouter

from meshui.accounts.views import ApiTokenViewSet, GroupViewSet, MeView, RoleBindingViewSet, UserViewSet
from meshui.audit.views import AuditEventViewSet
from meshui.catalog.views import AgentViewSet, InstanceViewSet, NamespaceViewSet, ServiceViewSet, WorkloadViewSet
from meshui.identity.views import CaChangeViewSet, CertificateAuthorityView, IssuedCertificateViewSet, JoinTokenViewSet
from meshui.policy.views import (
    ApprovalRuleViewSet,
    AuthorizationDefaultViewSet,
    AuthorizationPolicyViewSet,
    ChangeRequestViewSet,
    ConfigVersionViewSet,
    PeerAuthenticationViewSet,
    RequestAuthenticationViewSet,
    TrafficPolicyViewSet,
)
from meshui.telemetry.edge_views import EdgeTracesView, ServiceMetricsView
from meshui.telemetry.graph_views import GraphView
from meshui.telemetry.views import TraceViewSet

router = DefaultRouter()
router.register("namespaces", NamespaceViewSet)
router.register("services", ServiceViewSet)
router.register("workloads", WorkloadViewSet)
router.register("instances", InstanceViewSet)
router.register("agents", AgentViewSet)
router.register("users", UserViewSet)
router.register("groups", GroupViewSet)
router.register("role-bindings", RoleBindingViewSet)
router.register("tokens", ApiTokenViewSet, basename="apitoken")
router.register("audit-events", AuditEventViewSet, basename="auditevent")
router.register("traces", TraceViewSet, basename="trace")
router.register("traffic-policies", TrafficPolicyViewSet, basename="trafficpolicy")
router.register("authorization-policies", AuthorizationPolicyViewSet, basename="authorizationpolicy")
router.register("peer-authentications", PeerAuthenticationViewSet, basename="peerauthentication")
router.register("authorization-defaults", AuthorizationDefaultViewSet, basename="authorizationdefault")
router.register("request-authentications", RequestAuthenticationViewSet, basename="requestauthentication")
router.register("change-requests", ChangeRequestViewSet, basename="changerequest")
router.register("config-versions", ConfigVersionViewSet, basename="configversion")
router.register("approval-rules", ApprovalRuleViewSet)
router.register("join-tokens", JoinTokenViewSet)
router.register("certificates", IssuedCertificateViewSet, basename="certificate")
router.register("ca-changes", CaChangeViewSet, basename="cachange")

urlpatterns = [
    path("me/", MeView.as_view(), name="me"),
    path("graph/", GraphView.as_view(), name="graph"),
    path("ca/", CertificateAuthorityView.as_view(), name="ca"),
    path("services/<int:pk>/metrics/", ServiceMetricsView.as_view(), name="service-metrics"),
    path("edges/<str:source>/<str:destination>/traces/", EdgeTracesView.as_view(), name="edge-traces"),
    path("", include(router.urls)),
]
