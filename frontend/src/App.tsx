import { lazy } from "react";
import { Navigate, Route, Routes } from "react-router";
import { Layout } from "./components/Layout";
import { NotFoundPage } from "./pages/NotFoundPage";

// Each page loads with its own heavy library (Cytoscape, uPlot, the row virtualiser), so the first page of a
// visit parses only what it shows.
const AgentsPage = lazy(() => import("./pages/AgentsPage").then((module) => ({ default: module.AgentsPage })));
const ChangeEditorPage = lazy(() =>
  import("./pages/ChangeEditorPage").then((module) => ({ default: module.ChangeEditorPage })),
);
const ChangePage = lazy(() => import("./pages/ChangePage").then((module) => ({ default: module.ChangePage })));
const ChangesPage = lazy(() => import("./pages/ChangesPage").then((module) => ({ default: module.ChangesPage })));
const GraphPage = lazy(() => import("./pages/GraphPage").then((module) => ({ default: module.GraphPage })));
const IdentityPage = lazy(() => import("./pages/IdentityPage").then((module) => ({ default: module.IdentityPage })));
const PoliciesPage = lazy(() => import("./pages/PoliciesPage").then((module) => ({ default: module.PoliciesPage })));
const ServicePage = lazy(() => import("./pages/ServicePage").then((module) => ({ default: module.ServicePage })));
const ServicesPage = lazy(() => import("./pages/ServicesPage").then((module) => ({ default: module.ServicesPage })));
const TraceComparePage = lazy(() =>
  import("./pages/TraceComparePage").then((module) => ({ default: module.TraceComparePage })),
);
const TracePage = lazy(() => import("./pages/TracePage").then((module) => ({ default: module.TracePage })));
const TracesPage = lazy(() => import("./pages/TracesPage").then((module) => ({ default: module.TracesPage })));
const VersionPage = lazy(() => import("./pages/VersionPage").then((module) => ({ default: module.VersionPage })));
const VersionsPage = lazy(() => import("./pages/VersionsPage").then((module) => ({ default: module.VersionsPage })));

export function App() {
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route index element={<Navigate to="/graph" replace />} />
        <Route path="graph" element={<GraphPage />} />
        <Route path="traces" element={<TracesPage />} />
        <Route path="traces/compare" element={<TraceComparePage />} />
        <Route path="traces/:traceId" element={<TracePage />} />
        <Route path="services" element={<ServicesPage />} />
        <Route path="services/:serviceId" element={<ServicePage />} />
        <Route path="agents" element={<AgentsPage />} />
        <Route path="policies" element={<PoliciesPage />} />
        <Route path="changes" element={<ChangesPage />} />
        <Route path="changes/new" element={<ChangeEditorPage />} />
        <Route path="changes/:changeId" element={<ChangePage />} />
        <Route path="changes/:changeId/edit" element={<ChangeEditorPage />} />
        <Route path="versions" element={<VersionsPage />} />
        <Route path="versions/:number" element={<VersionPage />} />
        <Route path="identity" element={<IdentityPage />} />
        <Route path="*" element={<NotFoundPage />} />
      </Route>
    </Routes>
  );
}
