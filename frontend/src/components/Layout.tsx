import { Suspense, useEffect, useState } from "react";
import { NavLink, Outlet, useLocation } from "react-router";
import { logout } from "../api/client";
import type { ChangeRequest, Namespace, Page } from "../api/types";
import { namespacesWith } from "../model/policy";
import { Loading } from "./States";
import { useApi, useMe, useScope, useScopeQuery, WINDOWS, type WindowChoice } from "./hooks";

const NAV = [
  { to: "/graph", label: "Graph" },
  { to: "/traces", label: "Traces" },
  { to: "/services", label: "Services" },
  { to: "/agents", label: "Agents" },
  { to: "/policies", label: "Policies" },
  { to: "/changes", label: "Changes" },
  { to: "/versions", label: "Versions" },
];

// How often the top bar re-counts the changes waiting for the user's review.
const INBOX_REFRESH_MS = 30_000;

export function Layout() {
  const me = useMe();
  const scope = useScope();
  const scopeQuery = useScopeQuery();
  const namespaces = useApi<Page<Namespace>>("/api/v1/namespaces/", { page_size: 500, ordering: "name" });
  const [menuOpen, setMenuOpen] = useState(false);
  const approves =
    me.state === "ready" &&
    (me.data.capabilities_everywhere.includes("approve") ||
      me.data.is_superuser ||
      me.data.namespaces.some((entry) => entry.capabilities.includes("approve")));
  const inbox = useApi<Page<ChangeRequest>>(
    approves ? "/api/v1/change-requests/" : null,
    { awaiting: "me", page_size: 1 },
    INBOX_REFRESH_MS,
  );
  const waiting = inbox.data?.count ?? 0;
  // Approving or deciding a change moves to another page: count again then, not only every 30 s.
  const { pathname } = useLocation();
  const reloadInbox = inbox.reload;
  useEffect(() => {
    if (pathname.startsWith("/changes") || pathname.startsWith("/versions")) reloadInbox();
  }, [pathname, reloadInbox]);
  const user = me.state === "ready" ? me.data : null;
  const manages = user ? user.is_superuser || user.capabilities_everywhere.includes("manage") : false;
  // Join tokens are for the admins of a namespace: the Identity page joins the menu for anyone who is one somewhere.
  const managed = namespacesWith(user, "manage");
  const managesSome = user !== null && (managed === null || managed.length > 0);
  const roles = user
    ? user.capabilities_everywhere.length
      ? [`everywhere: ${user.capabilities_everywhere.join(", ")}`]
      : user.namespaces.map((entry) => `${entry.namespace}: ${entry.capabilities.join(", ")}`)
    : [];

  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <NavLink to={`/graph${scopeQuery}`} className="brand">
          mesh<span>ui</span>
        </NavLink>
        <nav aria-label="Main">
          {NAV.map((item) => (
            <NavLink
              key={item.to}
              to={
                item.to === "/changes" && waiting
                  ? `${item.to}${scopeQuery}${scopeQuery ? "&" : "?"}awaiting=me`
                  : `${item.to}${scopeQuery}`
              }
              className={({ isActive }) => (isActive ? "active" : "")}
              aria-label={item.to === "/changes" && waiting ? `Changes, ${waiting} awaiting your review` : undefined}
            >
              {item.label}
              {item.to === "/changes" && waiting > 0 && (
                <span className="nav-badge" data-testid="inbox-count" aria-hidden="true">
                  {waiting}
                </span>
              )}
            </NavLink>
          ))}
          {managesSome && (
            <NavLink to={`/identity${scopeQuery}`} className={({ isActive }) => (isActive ? "active" : "")}>
              Identity
            </NavLink>
          )}
          <a href="/api/docs/">API</a>
          {manages && <a href="/admin/">Admin</a>}
        </nav>
        <div className="scope">
          <label>
            <span>Namespace</span>
            <select
              aria-label="Namespace"
              value={scope.namespace}
              onChange={(event) => scope.setNamespace(event.target.value)}
            >
              <option value="">All namespaces</option>
              {namespaces.data?.results.map((namespace) => (
                <option key={namespace.id} value={namespace.name}>
                  {namespace.name}
                </option>
              ))}
            </select>
          </label>
          <label>
            <span>Window</span>
            <select
              aria-label="Time window"
              value={scope.window}
              onChange={(event) => scope.setWindow(event.target.value as WindowChoice)}
            >
              {WINDOWS.map((window) => (
                <option key={window} value={window}>
                  last {window}
                </option>
              ))}
            </select>
          </label>
        </div>
        <div className="user-menu">
          <button
            type="button"
            className="button ghost"
            aria-haspopup="true"
            aria-expanded={menuOpen}
            onClick={() => setMenuOpen((open) => !open)}
          >
            {user?.username ?? "…"} ▾
          </button>
          {menuOpen && user && (
            <div className="menu" role="menu" onKeyDown={(event) => event.key === "Escape" && setMenuOpen(false)}>
              <div className="menu-section">
                <div className="muted">Signed in as</div>
                <strong>{user.username}</strong>
                {user.is_superuser && <span className="tag">superuser</span>}
              </div>
              <div className="menu-section">
                <div className="muted">Can</div>
                {roles.length ? (
                  roles.map((line) => <div key={line}>{line}</div>)
                ) : (
                  <div>nothing yet: ask an admin</div>
                )}
              </div>
              <button type="button" role="menuitem" className="button" onClick={() => void logout()}>
                Sign out
              </button>
            </div>
          )}
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Suspense fallback={<Loading label="Loading the page…" />}>
          <Outlet />
        </Suspense>
      </main>
    </div>
  );
}
