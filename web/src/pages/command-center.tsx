import { useCallback, useEffect, useRef, useState } from "react";
import type { Ctx } from "../app";
import { Json, money, ms, when } from "../api";

const STATUSES = ["", "bot", "human", "closed"];

export function CommandCenter({ ctx, selected }: { ctx: Ctx; selected: string | null }) {
  const [rows, setRows] = useState<Json[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [status, setStatus] = useState("");
  const [q, setQ] = useState("");
  const [live, setLive] = useState(false);
  const [changed, setChanged] = useState(0); // bumps when the open conversation changes
  const selectedRef = useRef(selected);
  selectedRef.current = selected;

  const base = `/v1/tenants/${ctx.tenant}/conversations`;
  const query = useCallback(
    (cursor?: string | null) => {
      const p = new URLSearchParams({ limit: "50" });
      if (status) p.set("status", status);
      if (q) p.set("q", q);
      if (cursor) p.set("cursor", cursor);
      return `${base}?${p}`;
    },
    [base, status, q],
  );

  const reload = useCallback(() => {
    ctx.api.page(query()).then(({ items, next }) => (setRows(items), setNext(next))).catch(() => {});
  }, [ctx.api, query]);

  useEffect(reload, [reload]);

  useEffect(() => {
    const abort = new AbortController();
    ctx.api.stream(
      ctx.tenant,
      (event, data) => {
        if (event === "conversation" && data.conversation) {
          const row = data.conversation;
          const matches = (!status || row.status === status) && !q;
          setRows((current) => {
            const others = current.filter((r) => r.conversation_id !== row.conversation_id);
            return matches || current.length !== others.length ? [row, ...others] : current;
          });
          if (row.conversation_id === selectedRef.current) setChanged((n) => n + 1);
        } else if (event === "erased") {
          setRows((current) => current.filter((r) => r.conversation_id !== data.conversation_id));
        } else if (event === "resync" || event === "rebuilt") {
          reload();
          setChanged((n) => n + 1);
        }
      },
      abort.signal,
      setLive,
    );
    return () => abort.abort();
  }, [ctx.api, ctx.tenant, status, q, reload]);

  return (
    <div className="split">
      <section className="list">
        <div className="toolbar">
          <input
            aria-label="Search conversations"
            placeholder="Search lead, name or text"
            value={q}
            onChange={(e) => setQ(e.target.value)}
          />
          <select aria-label="Status" value={status} onChange={(e) => setStatus(e.target.value)}>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s || "all"}
              </option>
            ))}
          </select>
          <span className={live ? "live on" : "live"} title="Live updates">
            {live ? "● live" : "○ offline"}
          </span>
        </div>
        <ul data-testid="conversation-list">
          {rows.map((row) => (
            <li
              key={row.conversation_id}
              data-testid="conversation-row"
              data-lead={row.lead}
              className={row.conversation_id === selected ? "selected" : ""}
              onClick={() => ctx.go(`c/${row.conversation_id}`)}
            >
              <div className="row-head">
                <strong>{row.lead_name || `+${row.lead}`}</strong>
                <span className={`badge ${row.status}`}>{row.status}</span>
              </div>
              <div className="preview">
                {row.last_direction === "out" ? "↩ " : ""}
                {row.last_text ?? ""}
              </div>
              <div className="meta">
                +{row.lead} · {money(row.cost_usd)} · {when(row.updated_at)}
              </div>
            </li>
          ))}
        </ul>
        {next && (
          <button
            className="link"
            onClick={() =>
              ctx.api.page(query(next)).then((p) => (setRows((r) => [...r, ...p.items]), setNext(p.next)))
            }
          >
            Load more
          </button>
        )}
        {!rows.length && <p className="muted pad">No conversations yet. Try the sandbox chat.</p>}
      </section>
      <section className="detail">
        {selected ? (
          <ConversationView ctx={ctx} id={selected} changed={changed} />
        ) : (
          <div className="empty">Choose a conversation.</div>
        )}
      </section>
    </div>
  );
}

function ConversationView({ ctx, id, changed }: { ctx: Ctx; id: string; changed: number }) {
  const [conv, setConv] = useState<Json | null>(null);
  const [events, setEvents] = useState<Json[] | null>(null);
  const [text, setText] = useState("");
  const [error, setError] = useState("");
  const base = `/v1/tenants/${ctx.tenant}/conversations/${id}`;

  const load = useCallback(() => {
    ctx.api.get(base).then(setConv).catch((e) => setError(e.message));
  }, [ctx.api, base]);
  useEffect(load, [load, changed]);
  useEffect(() => setEvents(null), [id]);

  const act = async (path: string, body?: Json) => {
    setError("");
    try {
      await ctx.api.post(`${base}/${path}`, body);
      if (path === "messages") setText("");
      load();
    } catch (e: any) {
      setError(e.message);
    }
  };

  if (!conv) return <div className="empty">{error || "Loading…"}</div>;
  const human = conv.mode === "human";
  return (
    <div className="conversation" data-testid="conversation-view">
      <header>
        <div>
          <h2>{conv.lead_name || `+${conv.lead}`}</h2>
          <div className="muted">
            +{conv.lead} · <span className={`badge ${conv.status}`} data-testid="conversation-status">{conv.status}</span> ·
            cost {money(conv.cost_usd)} · first response {ms(conv.first_response_ms)} · {conv.handoffs} handoff(s) · {conv.takeovers} takeover(s)
          </div>
        </div>
        <div className="actions">
          {human ? (
            <button onClick={() => act("release")}>Hand back to the assistant</button>
          ) : (
            <button onClick={() => act("takeover")}>Take over</button>
          )}
        </div>
      </header>
      {error && <p className="error">{error}</p>}
      <ol className="timeline" data-testid="timeline">
        {conv.messages.map((m: Json) => (
          <Message key={m.event_id} m={m} />
        ))}
      </ol>
      {conv.bookings.length > 0 && (
        <p className="muted">
          Bookings: {conv.bookings.map((b: Json) => `${when(b.starts_at)}${b.cancelled_at ? " (cancelled)" : ""}`).join(", ")}
        </p>
      )}
      {conv.payments.length > 0 && (
        <p className="muted">
          Payments:{" "}
          {conv.payments.map((p: Json) => `${(p.amount_minor / 100).toFixed(2)} ${p.currency}`).join(", ")}
        </p>
      )}
      <form
        className="composer"
        onSubmit={(e) => {
          e.preventDefault();
          act("messages", { text });
        }}
      >
        <textarea
          aria-label="Reply as a human"
          placeholder={human ? "Write to the lead…" : "Take over to reply as a human"}
          disabled={!human}
          value={text}
          onChange={(e) => setText(e.target.value)}
        />
        <button type="submit" disabled={!human || !text.trim()}>
          Send
        </button>
      </form>
      <details
        onToggle={(e) => {
          if ((e.target as HTMLDetailsElement).open && !events)
            ctx.api.get(`${base}/events`).then(setEvents).catch((err) => setError(err.message));
        }}
      >
        <summary>Event history (from the conversation service)</summary>
        <ol className="events">
          {(events ?? []).map((e) => (
            <li key={e.version}>
              <code>
                #{e.version} {e.type}
              </code>{" "}
              <span className="muted">{when(e.at)}</span>
            </li>
          ))}
        </ol>
      </details>
    </div>
  );
}

function Message({ m }: { m: Json }) {
  const out = m.direction === "out";
  const human = m.tier === "human";
  return (
    <li className={`msg ${out ? "out" : "in"} ${human ? "human" : ""}`} data-testid="message" data-direction={m.direction}>
      <div className="bubble">{m.text ?? <em className="muted">(no reply: {m.source})</em>}</div>
      {out && (
        <div className="why" data-testid="reply-origin">
          {human ? (
            <span className="badge human">human · {m.agent}</span>
          ) : (
            <>
              <span className="badge tier" data-testid="tier">{m.tier}</span>
              <span className="badge" data-testid="source">{m.source}</span>
              <span data-testid="cost">{money(m.cost_usd, 5)}</span>
              <span data-testid="cache">{m.cache_hit ? "cache hit" : "no cache"}</span>
              {m.model && m.model !== "local" && <span>{m.model}</span>}
              {m.latency_ms != null && <span>{ms(m.latency_ms)}</span>}
            </>
          )}
          <span className="status">{m.status}</span>
          {m.reply_ms != null && <span>replied in {ms(m.reply_ms)}</span>}
          {m.failure && <span className="error">{m.failure}</span>}
        </div>
      )}
      {m.citations?.length > 0 && (
        <div className="sources" data-testid="sources">
          Sources:{" "}
          {m.citations.map((c: Json) => (
            <span key={c.id} className="source">
              {c.title} <span className="muted">({c.kind}, {c.score.toFixed(2)})</span>
            </span>
          ))}
        </div>
      )}
      <div className="meta">{when(m.occurred_at)}</div>
    </li>
  );
}
