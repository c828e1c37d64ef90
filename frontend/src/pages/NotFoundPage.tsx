import { Link } from "react-router";
import { Empty } from "../components/States";

export function NotFoundPage() {
  return (
    <Empty title="No page here">
      <Link to="/graph">Go to the topology graph</Link>
    </Empty>
  );
}
