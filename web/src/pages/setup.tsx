import { useEffect, useState } from "react";
import type { Ctx } from "../app";
import { Json } from "../api";

const TOOLS = [
  "check_availability",
  "book_slot",
  "cancel_booking",
  "reschedule_booking",
  "create_payment_link",
  "trigger_workflow",
];

/** The onboarding wizard (a new tenant) and the settings of the current one. */
export function SetupPage({ ctx }: { ctx: Ctx }) {
  const [creating, setCreating] = useState(!ctx.tenant);
  return (
    <div className="page setup">
      <div className="toolbar">
        <h1>{creating ? "Onboard a business" : `Settings of ${ctx.tenant}`}</h1>
        {!creating && (
          <button className="link" onClick={() => setCreating(true)}>
            + Onboard another business
          </button>
        )}
      </div>
      {creating ? (
        <CreateTenant ctx={ctx} onCreated={(id) => (ctx.setTenant(id), setCreating(false))} />
      ) : (
        <TenantSettings key={ctx.tenant} ctx={ctx} />
      )}
    </div>
  );
}

function CreateTenant({ ctx, onCreated }: { ctx: Ctx; onCreated: (id: string) => void }) {
  const [id, setId] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState("");
  return (
    <section className="panel">
      <h2>1 · The business</h2>
      <form
        className="stack"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            await ctx.api.post("/v1/tenants", { id, name });
            onCreated(id);
          } catch (err: any) {
            setError(err.message);
          }
        }}
      >
        <label>
          Business name
          <input aria-label="Business name" value={name} onChange={(e) => (setName(e.target.value), !id && setId(""))} />
        </label>
        <label>
          Tenant id (letters, digits, - and _)
          <input aria-label="Tenant id" value={id} pattern="[A-Za-z0-9_-]{1,64}" onChange={(e) => setId(e.target.value)} />
        </label>
        <button type="submit" disabled={!id || !name}>
          Create
        </button>
      </form>
      {error && <p className="error">{error}</p>}
    </section>
  );
}

function TenantSettings({ ctx }: { ctx: Ctx }) {
  const base = `/v1/tenants/${ctx.tenant}`;
  const [tenant, setTenant] = useState<Json | null>(null);
  const [error, setError] = useState("");
  const reload = () => ctx.api.get(base).then(setTenant).catch((e) => setError(e.message));
  useEffect(() => {
    reload();
  }, [base]);
  if (error) return <p className="error">{error}</p>;
  if (!tenant) return <div className="empty">Loading…</div>;
  return (
    <>
      <WhatsApp ctx={ctx} tenant={tenant} onSaved={reload} />
      <Profile ctx={ctx} tenant={tenant} onSaved={reload} />
      <ToolsAndBudget ctx={ctx} />
      <section className="panel">
        <h2>5 · Try it</h2>
        <p>
          Write to the business as a lead in the <a href="#/sandbox">sandbox chat</a> and watch the conversation in the{" "}
          <a href="#/">Command Center</a>.
        </p>
      </section>
    </>
  );
}

function WhatsApp({ ctx, tenant, onSaved }: { ctx: Ctx; tenant: Json; onSaved: () => void }) {
  const [form, setForm] = useState({ phone_number_id: "", access_token: "", app_secret: "", verify_token: "" });
  const [result, setResult] = useState<Json | null>(null);
  const [error, setError] = useState("");
  const field = (key: keyof typeof form, label: string, secret = false) => (
    <label>
      {label}
      <input
        aria-label={label}
        type={secret ? "password" : "text"}
        value={form[key]}
        onChange={(e) => setForm({ ...form, [key]: e.target.value })}
      />
    </label>
  );
  return (
    <section className="panel">
      <h2>2 · WhatsApp number</h2>
      <p className="muted">
        Connected: {tenant.phone_number_ids.length ? tenant.phone_number_ids.join(", ") : "none yet"}. Webhook URL:{" "}
        <code>{tenant.webhook_url}</code>
      </p>
      <form
        className="grid"
        onSubmit={async (e) => {
          e.preventDefault();
          setError("");
          try {
            setResult(await ctx.api.put(`/v1/tenants/${ctx.tenant}/whatsapp`, form));
            onSaved();
          } catch (err: any) {
            setError(err.message);
          }
        }}
      >
        {field("phone_number_id", "Phone number ID")}
        {field("access_token", "Access token", true)}
        {field("app_secret", "App secret", true)}
        {field("verify_token", "Verify token (you choose it)")}
        <button type="submit" disabled={Object.values(form).some((v) => !v)}>
          Connect the number
        </button>
      </form>
      {error && <p className="error">{error}</p>}
      {result && (
        <div className="notice" data-testid="webhook-instructions">
          <p>In Meta's App Dashboard → WhatsApp → Configuration, paste:</p>
          <dl>
            <dt>Callback URL</dt>
            <dd>
              <code data-testid="webhook-url">{result.webhook_url}</code>
            </dd>
            <dt>Verify token</dt>
            <dd>
              <code>{result.verify_token}</code>
            </dd>
            <dt>Webhook fields</dt>
            <dd>{result.subscribe_fields.join(", ")}</dd>
          </dl>
        </div>
      )}
    </section>
  );
}

function Profile({ ctx, tenant, onSaved }: { ctx: Ctx; tenant: Json; onSaved: () => void }) {
  const [profile, setProfile] = useState<Json>(tenant.profile);
  const [saved, setSaved] = useState("");
  const text = (key: string, label: string, long = false) => (
    <label className={long ? "wide" : ""}>
      {label}
      {long ? (
        <textarea aria-label={label} value={profile[key] ?? ""} onChange={(e) => setProfile({ ...profile, [key]: e.target.value })} />
      ) : (
        <input aria-label={label} value={profile[key] ?? ""} onChange={(e) => setProfile({ ...profile, [key]: e.target.value })} />
      )}
    </label>
  );
  return (
    <section className="panel">
      <h2>3 · Business profile</h2>
      <form
        className="grid"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            await ctx.api.put(`/v1/tenants/${ctx.tenant}/profile`, profile);
            setSaved("Saved.");
            onSaved();
          } catch (err: any) {
            setSaved(err.message);
          }
        }}
      >
        {text("name", "Name shown to leads")}
        {text("timezone", "Time zone")}
        <label>
          Languages
          <input
            aria-label="Languages"
            value={(profile.languages ?? []).join(", ")}
            onChange={(e) => setProfile({ ...profile, languages: e.target.value.split(",").map((s) => s.trim()).filter(Boolean) })}
          />
        </label>
        {text("tone", "Tone")}
        {text("greeting_template", "Greeting", true)}
        {text("thanks_template", "Thanks", true)}
        {text("handoff_message", "Holding message when a human takes over", true)}
        <button type="submit">Save profile</button>
        {saved && <span className="muted">{saved}</span>}
      </form>
    </section>
  );
}

function ToolsAndBudget({ ctx }: { ctx: Ctx }) {
  const base = `/v1/tenants/${ctx.tenant}`;
  const [enabled, setEnabled] = useState<string[]>([]);
  const [connections, setConnections] = useState<Json[]>([]);
  const [budget, setBudget] = useState<string>("");
  const [calendar, setCalendar] = useState({ url: "", calendar_url: "", username: "", password: "" });
  const [stripe, setStripe] = useState({ api_key: "", webhook_secret: "", currency: "eur" });
  const [notice, setNotice] = useState("");

  useEffect(() => {
    ctx.api.get(`${base}/tools/settings`).then((s) => setEnabled(s.enabled_tools ?? [])).catch(() => {});
    ctx.api.get(`${base}/tools/connections`).then(setConnections).catch(() => {});
    ctx.api.get(`${base}/budget`).then((b) => setBudget(b.monthly_usd == null ? "" : String(b.monthly_usd))).catch(() => {});
  }, [ctx.api, base]);

  const run = async (what: string, call: () => Promise<unknown>) => {
    try {
      await call();
      setNotice(`${what}: saved.`);
    } catch (e: any) {
      setNotice(`${what}: ${e.message}`);
    }
  };

  return (
    <section className="panel">
      <h2>4 · Tools and budget</h2>
      <fieldset>
        <legend>Tools the assistant may use</legend>
        {TOOLS.map((tool) => (
          <label key={tool} className="check">
            <input
              type="checkbox"
              checked={enabled.includes(tool)}
              onChange={(e) => setEnabled(e.target.checked ? [...enabled, tool] : enabled.filter((t) => t !== tool))}
            />
            {tool}
          </label>
        ))}
        <button onClick={() => run("Tools", () => ctx.api.put(`${base}/tools/settings`, { enabled_tools: enabled }))}>Save tools</button>
      </fieldset>
      <p className="muted">Connected: {connections.map((c) => `${c.kind} (${c.provider})`).join(", ") || "nothing yet"}</p>
      <div className="grid">
        <fieldset>
          <legend>Calendar (CalDAV)</legend>
          {(["url", "calendar_url", "username", "password"] as const).map((k) => (
            <input key={k} aria-label={`CalDAV ${k}`} placeholder={k} type={k === "password" ? "password" : "text"} value={calendar[k]} onChange={(e) => setCalendar({ ...calendar, [k]: e.target.value })} />
          ))}
          <button
            onClick={() =>
              run("Calendar", () =>
                ctx.api.put(`${base}/tools/connections/calendar`, {
                  provider: "caldav",
                  settings: { url: calendar.url, calendar_url: calendar.calendar_url, username: calendar.username || null },
                  secrets: { password: calendar.password || null },
                }),
              )
            }
          >
            Connect calendar
          </button>
        </fieldset>
        <fieldset>
          <legend>Payments (Stripe)</legend>
          <input aria-label="Stripe API key" placeholder="sk_live_…" type="password" value={stripe.api_key} onChange={(e) => setStripe({ ...stripe, api_key: e.target.value })} />
          <input aria-label="Stripe webhook secret" placeholder="whsec_…" type="password" value={stripe.webhook_secret} onChange={(e) => setStripe({ ...stripe, webhook_secret: e.target.value })} />
          <input aria-label="Currency" value={stripe.currency} onChange={(e) => setStripe({ ...stripe, currency: e.target.value })} />
          <button
            onClick={() =>
              run("Stripe", () =>
                ctx.api.put(`${base}/tools/connections/payments`, {
                  provider: "stripe",
                  settings: { currency: stripe.currency },
                  secrets: { api_key: stripe.api_key, webhook_secret: stripe.webhook_secret },
                }),
              )
            }
          >
            Connect Stripe
          </button>
        </fieldset>
      </div>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          run("Budget", () => ctx.api.put(`${base}/budget`, { monthly_usd: budget === "" ? null : Number(budget) }));
        }}
      >
        <label>
          Monthly model budget (USD, empty for no cap)
          <input aria-label="Monthly budget" type="number" min={0} step="0.01" value={budget} onChange={(e) => setBudget(e.target.value)} />
        </label>
        <button type="submit">Save budget</button>
      </form>
      {notice && <p className="notice">{notice}</p>}
    </section>
  );
}
