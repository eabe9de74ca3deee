import { useCallback, useEffect, useMemo, useState } from "react";
import { Api, ApiError, Json, saveToken, storedToken } from "./api";
import { finishSignIn, startSignIn } from "./oidc";
import { AnalyticsPage } from "./pages/analytics";
import { CommandCenter } from "./pages/command-center";
import { DeadLettersPage } from "./pages/dead-letters";
import { KnowledgePage } from "./pages/knowledge";
import { SandboxPage } from "./pages/sandbox";
import { SetupPage } from "./pages/setup";

export interface Ctx {
  api: Api;
  me: Json;
  tenant: string;
  setTenant: (tenant: string) => void;
  go: (route: string) => void;
}

const PAGES: [string, string][] = [
  ["", "Command Center"],
  ["analytics", "Analytics"],
  ["knowledge", "Knowledge"],
  ["sandbox", "Sandbox chat"],
  ["dead-letters", "Dead letters"],
  ["setup", "Onboarding & settings"],
];

function useRoute(): [string[], (route: string) => void] {
  const read = () => location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const onChange = () => setRoute(read());
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return [route, (to: string) => (location.hash = `#/${to}`)];
}

export function App() {
  const [token, setToken] = useState(storedToken);
  const [me, setMe] = useState<Json | null>(null);
  const [error, setError] = useState("");
  const [tenant, setTenantState] = useState(sessionStorage.getItem("taskpilot.tenant") ?? "");
  const [route, go] = useRoute();
  const api = useMemo(
    () =>
      token
        ? new Api(token, () => {
            saveToken(null);
            setToken(null);
            setMe(null);
            setError("Your session has ended: sign in again.");
          })
        : null,
    [token],
  );

  useEffect(() => {
    finishSignIn()
      .then((t) => t && (saveToken(t), setToken(t)))
      .catch((e: Error) => setError(e.message));
  }, []);

  const setTenant = useCallback((t: string) => {
    sessionStorage.setItem("taskpilot.tenant", t);
    setTenantState(t);
  }, []);

  useEffect(() => {
    if (!api) return;
    api
      .get("/v1/me")
      .then((who) => {
        setMe(who);
        if (who.tenant_id && !who.roles.includes("operator")) setTenant(who.tenant_id);
        else if (!sessionStorage.getItem("taskpilot.tenant") && who.tenant_id) setTenant(who.tenant_id);
      })
      .catch((e: ApiError) => {
        setError(e.message);
        saveToken(null);
        setToken(null);
      });
  }, [api, setTenant]);

  if (!api || !me) return <SignIn error={error} onToken={(t) => (saveToken(t), setError(""), setToken(t))} />;

  const ctx: Ctx = { api, me, tenant, setTenant, go };
  const page = route[0] ?? "";
  return (
    <div className="shell">
      <nav className="sidebar">
        <div className="brand">TaskPilot</div>
        {PAGES.map(([path, label]) => (
          <a key={path} href={`#/${path}`} className={page === path || (path === "" && page === "c") ? "active" : ""}>
            {label}
          </a>
        ))}
        <div className="who">
          <TenantPicker ctx={ctx} />
          <div className="muted">
            {me.name} · {me.roles.join(", ")}
          </div>
          <button className="link" onClick={() => (saveToken(null), setToken(null), setMe(null))}>
            Sign out
          </button>
        </div>
      </nav>
      <main>
        {!tenant && page !== "setup" ? (
          <div className="empty">Choose a tenant, or create one under Onboarding.</div>
        ) : page === "" || page === "c" ? (
          <CommandCenter ctx={ctx} selected={route[1] ?? null} />
        ) : page === "analytics" ? (
          <AnalyticsPage ctx={ctx} />
        ) : page === "knowledge" ? (
          <KnowledgePage ctx={ctx} />
        ) : page === "sandbox" ? (
          <SandboxPage ctx={ctx} />
        ) : page === "dead-letters" ? (
          <DeadLettersPage ctx={ctx} />
        ) : (
          <SetupPage ctx={ctx} />
        )}
      </main>
    </div>
  );
}

function TenantPicker({ ctx }: { ctx: Ctx }) {
  const [tenants, setTenants] = useState<string[]>([]);
  const operator = ctx.me.roles.includes("operator");
  useEffect(() => {
    if (operator) ctx.api.get<string[]>("/v1/tenants").then(setTenants).catch(() => {});
  }, [ctx.api, operator, ctx.tenant]);
  if (!operator) return <div className="tenant">{ctx.tenant}</div>;
  const options = [...new Set([...tenants, ctx.tenant, "_unknown"].filter(Boolean))];
  return (
    <select aria-label="Tenant" value={ctx.tenant} onChange={(e) => ctx.setTenant(e.target.value)}>
      <option value="">— tenant —</option>
      {options.map((t) => (
        <option key={t} value={t}>
          {t === "_unknown" ? "unroutable webhooks" : t}
        </option>
      ))}
    </select>
  );
}

function SignIn({ error, onToken }: { error: string; onToken: (token: string) => void }) {
  const [value, setValue] = useState("");
  const [config, setConfig] = useState<Json>({});
  useEffect(() => {
    fetch("/v1/auth/config").then((r) => r.json()).then(setConfig).catch(() => {});
  }, []);
  return (
    <div className="signin">
      <h1>TaskPilot</h1>
      <p>Sign in with a token from your identity provider (a JWT with your tenant and role).</p>
      {config.oidc && (
        <p>
          <button onClick={() => startSignIn(config.oidc)}>Sign in with {new URL(config.oidc.issuer).host}</button>
        </p>
      )}
      {config.local_issuer && (
        <p className="muted">
          On this installation: <code>taskpilot token --tenant demo --role owner --url</code> prints a
          link that signs you in.
        </p>
      )}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          onToken(value.trim());
        }}
      >
        <textarea aria-label="Token" value={value} onChange={(e) => setValue(e.target.value)} rows={5} />
        <button type="submit" disabled={!value.trim()}>
          Sign in
        </button>
      </form>
      {error && <p className="error">{error}</p>}
    </div>
  );
}
