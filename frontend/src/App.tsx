import { lazy } from "react";
import { Navigate, Route, Routes } from "react-router";
import { Layout } from "./components/Layout";
import { NotFoundPage } from "./pages/NotFoundPage";

// Each page loads with its own heavy library (Cytoscape, uPlot, the row virtualiser), so the first page of a
// visit parses only what it shows.
const AgentsPage = lazy(() => import("./pages/AgentsPage").then((module) => ({ default: module.AgentsPage })));
const GraphPage = lazy(() => import("./pages/GraphPage").then((module) => ({ default: module.GraphPage })));
const ServicePage = lazy(() => import("./pages/ServicePage").then((module) => ({ default: module.ServicePage })));
const ServicesPage = lazy(() => import("./pages/ServicesPage").then((module) => ({ default: module.ServicesPage })));
const TraceComparePage = lazy(() =>
  import("./pages/TraceComparePage").then((module) => ({ default: module.TraceComparePage })),
);
const TracePage = lazy(() => import("./pages/TracePage").then((module) => ({ default: module.TracePage })));
const TracesPage = lazy(() => import("./pages/TracesPage").then((module) => ({ default: module.TracesPage })));

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
        <Route path="*" element={<NotFoundPage />} />
      </Route>
    </Routes>
  );
}
