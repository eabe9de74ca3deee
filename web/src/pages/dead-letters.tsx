import { useCallback, useEffect, useState } from "react";
import type { Ctx } from "../app";
import { Json, when } from "../api";

export function DeadLettersPage({ ctx }: { ctx: Ctx }) {
  const [status, setStatus] = useState("open");
  const [rows, setRows] = useState<Json[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [open, setOpen] = useState<Json | null>(null);
  const [notice, setNotice] = useState("");
  const base = `/v1/tenants/${ctx.tenant}/dead-letters`;

  const load = useCallback(() => {
    ctx.api
      .page(`${base}?status=${status}`)
      .then(({ items, next }) => (setRows(items), setNext(next)))
      .catch((e) => setNotice(e.message));
  }, [ctx.api, base, status]);
  useEffect(load, [load]);

  const act = async (id: string, action: "replay" | "discard") => {
    try {
      const result = await ctx.api.post(`${base}/${id}/${action}`);
      setNotice(action === "replay" ? `Published again to ${result.subject} (${result.msg_id})` : "Discarded");
      setOpen(await ctx.api.get(`${base}/${id}`));
      load();
    } catch (e: any) {
      setNotice(e.message);
    }
  };

  return (
    <div className="page">
      <div className="toolbar">
        <h1>Dead letters</h1>
        <select aria-label="Dead letter status" value={status} onChange={(e) => setStatus(e.target.value)}>
          {["open", "replayed", "discarded", "all"].map((s) => (
            <option key={s}>{s}</option>
          ))}
        </select>
      </div>
      {notice && <p className="notice">{notice}</p>}
      <div className="split">
        <section className="list">
          <ul data-testid="dead-letter-list">
            {rows.map((d) => (
              <li key={d.id} className={open?.id === d.id ? "selected" : ""} onClick={() => ctx.api.get(`${base}/${d.id}`).then(setOpen)}>
                <div className="row-head">
                  <strong>{d.reason}</strong>
                  <span className={`badge ${d.status}`}>{d.status}</span>
                </div>
                <div className="preview">{d.error}</div>
                <div className="meta">
                  {d.origin} · {d.attempts} attempt(s) · {when(d.occurred_at)}
                </div>
              </li>
            ))}
          </ul>
          {next && <button className="link" onClick={() => ctx.api.page(`${base}?status=${status}&cursor=${next}`).then((p) => (setRows((r) => [...r, ...p.items]), setNext(p.next)))}>Load more</button>}
          {!rows.length && <p className="muted pad">Nothing here.</p>}
        </section>
        <section className="detail">
          {open ? (
            <div className="letter">
              <h2>{open.reason}</h2>
              <p className="error">{open.error}</p>
              <dl>
                <dt>Origin</dt>
                <dd>{open.origin}</dd>
                <dt>Subject</dt>
                <dd>
                  <code>{open.subject ?? "– (never published)"}</code>
                </dd>
                <dt>Stream</dt>
                <dd>
                  {open.stream ?? "–"} {open.stream_seq ? `#${open.stream_seq}` : ""}
                </dd>
                <dt>Attempts</dt>
                <dd>{open.attempts}</dd>
                <dt>Status</dt>
                <dd>
                  {open.status} {open.replays ? `(${open.replays} replays)` : ""}
                </dd>
              </dl>
              <h3>Headers</h3>
              <pre>{JSON.stringify(open.headers, null, 2)}</pre>
              <h3>Payload ({open.payload_encoding})</h3>
              <pre>{pretty(open.payload)}</pre>
              <div className="actions">
                <button disabled={open.status === "discarded" || !open.subject} onClick={() => act(open.id, "replay")}>
                  Replay
                </button>
                <button className="danger" disabled={open.status === "discarded"} onClick={() => act(open.id, "discard")}>
                  Discard
                </button>
              </div>
              {open.actions?.length > 0 && (
                <ul className="muted">
                  {open.actions.map((a: Json) => (
                    <li key={a.at}>
                      {a.action} by {a.actor} at {when(a.at)}
                    </li>
                  ))}
                </ul>
              )}
            </div>
          ) : (
            <div className="empty">Choose a dead letter.</div>
          )}
        </section>
      </div>
    </div>
  );
}

function pretty(payload: string): string {
  try {
    return JSON.stringify(JSON.parse(payload), null, 2);
  } catch {
    return payload;
  }
}
