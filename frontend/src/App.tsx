import { Navigate, Route, Routes } from "react-router";
import { Layout } from "./components/Layout";
import { AgentsPage } from "./pages/AgentsPage";
import { GraphPage } from "./pages/GraphPage";
import { NotFoundPage } from "./pages/NotFoundPage";
import { ServicePage } from "./pages/ServicePage";
import { ServicesPage } from "./pages/ServicesPage";
import { TraceComparePage } from "./pages/TraceComparePage";
import { TracePage } from "./pages/TracePage";
import { TracesPage } from "./pages/TracesPage";

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
