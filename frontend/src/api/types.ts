import type { GraphData, HealthThresholds } from "../model/graph";
import type { SeriesPoint } from "../model/series";
import type { TraceDetail } from "../model/waterfall";

export interface Page<T> {
  count?: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

export interface Me {
  username: string;
  is_superuser: boolean;
  capabilities_everywhere: string[];
  namespaces: { namespace: string; capabilities: string[] }[];
}

export interface Namespace {
  id: number;
  name: string;
}

export interface Service {
  id: number;
  namespace: string;
  name: string;
  ports: unknown;
  labels: Record<string, string>;
  load_balancer: string;
}

export interface Workload {
  id: number;
  service: number;
  namespace: string;
  name: string;
  labels: Record<string, string>;
  service_account: string;
}

export interface Instance {
  id: number;
  workload: number;
  address: string;
  port: number;
  health: string;
  last_seen: string | null;
}

export interface Agent {
  id: number;
  agent_id: string;
  namespace: string;
  instance: number | null;
  version: string;
  admin_address: string;
  config_version: number | null; // none until the agent acks a config
  status: "connected" | "stale" | "disconnected";
  last_heartbeat: string | null;
  registered_at: string;
  /** The SPIFFE id of the certificate the CA last issued to this agent; null while it holds none. */
  certificate_spiffe_id: string | null;
  certificate_not_after: string | null;
}

export interface GraphWindow {
  start: string;
  end: string;
  seconds: number;
  resolution_s: number;
}

export interface GraphResponse extends GraphData {
  window: GraphWindow;
  health_thresholds?: HealthThresholds;
}

// One trace's summary row, as search lists it and as a trace's detail heads it.
export type TraceSummary = TraceDetail["trace"];

export type { SeriesPoint, TraceDetail };

export interface DeniedCaller {
  source_workload: string;
  denied: number;
  denied_rps: number;
}

export interface ServiceMetrics {
  service: string;
  window: GraphWindow;
  step_s: number;
  inbound: SeriesPoint[];
  outbound: SeriesPoint[];
  /** The callers an authorization policy refused most in the window. */
  denied_callers: DeniedCaller[];
}

export type { CaChange, CaRoot, CaStatus, IssuedCertificate, JoinToken, JoinTokenState } from "../model/identity";

export type {
  Approval,
  ChangeComment,
  ChangeDiff,
  ChangeItem,
  ChangeOperation,
  ChangePreview,
  ChangeRequest,
  ChangeState,
  ConfigVersion,
  ConfigVersionDetail,
  DiffItem,
  LivePolicy,
  PolicyKind,
  PolicyWarning,
  RolloutAgent,
  RolloutCounts,
  Spec,
} from "../model/policy";
