import { useEffect, useRef, useState } from "react";
import type { Ctx } from "../app";
import { Json } from "../api";

const randomLead = () => `3460${Math.floor(1_000_000 + Math.random() * 8_999_999)}`;

interface Line {
  from: "lead" | "business";
  text: string;
  key: string;
}

/** Write to the tenant as a lead, through the real path: a webhook signed with the tenant's app
 *  secret goes to ingest; what the lead's phone receives comes from the Graph API sandbox. */
export function SandboxPage({ ctx }: { ctx: Ctx }) {
  const [lead, setLead] = useState(() => sessionStorage.getItem("taskpilot.sandbox.lead") ?? randomLead());
  const [lines, setLines] = useState<Line[]>([]);
  const [text, setText] = useState("");
  const [error, setError] = useState("");
  const after = useRef(0);
  const base = `/v1/tenants/${ctx.tenant}/sandbox/messages`;

  useEffect(() => sessionStorage.setItem("taskpilot.sandbox.lead", lead), [lead]);

  useEffect(() => {
    let stop = false;
    after.current = 0;
    setLines([]);
    (async () => {
      while (!stop) {
        try {
          const got: Json[] = await ctx.api.get(`${base}?lead=${lead}&after=${after.current}&wait=20`);
          if (stop) return;
          for (const m of got) after.current = Math.max(after.current, m.seq);
          if (got.length)
            setLines((l) => [...l, ...got.map((m) => ({ from: "business" as const, text: m.text ?? `[${m.type}]`, key: m.wamid }))]);
        } catch (e: any) {
          setError(e.message);
          await new Promise((r) => setTimeout(r, 2000));
        }
      }
    })();
    return () => {
      stop = true;
    };
  }, [ctx.api, base, lead]);

  const send = async () => {
    setError("");
    const body = { lead, text, name: "Sandbox lead" };
    setText("");
    setLines((l) => [...l, { from: "lead", text: body.text, key: `${Date.now()}` }]);
    try {
      await ctx.api.post(base, body);
    } catch (e: any) {
      setError(e.message);
    }
  };

  return (
    <div className="page sandbox">
      <div className="toolbar">
        <h1>Sandbox chat</h1>
        <span className="muted">
          You are lead <code data-testid="sandbox-lead">+{lead}</code>
        </span>
        <button className="link" onClick={() => setLead(randomLead())}>
          New lead
        </button>
        <a href={`#/`}>Watch it in the Command Center →</a>
      </div>
      <p className="muted">
        Messages go through the whole system (ingest → conversation → inference → the send path) and
        arrive in the Graph API sandbox instead of a phone.
      </p>
      <div className="phone" data-testid="phone">
        {lines.map((l) => (
          <div key={l.key} className={`bubble ${l.from}`} data-testid={`sandbox-${l.from}`}>
            {l.text}
          </div>
        ))}
      </div>
      {error && <p className="error">{error}</p>}
      <form
        className="composer"
        onSubmit={(e) => {
          e.preventDefault();
          if (text.trim()) send();
        }}
      >
        <input aria-label="Message as the lead" value={text} placeholder="Write as the lead…" onChange={(e) => setText(e.target.value)} />
        <button type="submit" disabled={!text.trim()}>
          Send
        </button>
      </form>
    </div>
  );
}
