import { useEffect, useState } from "react";
import type { Ctx } from "../app";
import { Lines, StackedBars } from "../components/charts";
import { Json, money, ms, pct } from "../api";

const TIER_COLORS: Record<string, string> = {
  L0: "#9aa5b1",
  L1: "#2f9e44",
  L2: "#1971c2",
  L3: "#7048e8",
  fallback: "#f08c00",
  human: "#e64980",
};

const DAY = 86_400_000;

export function AnalyticsPage({ ctx }: { ctx: Ctx }) {
  const [days, setDays] = useState(30);
  const [bucket, setBucket] = useState("day");
  const [summary, setSummary] = useState<Json | null>(null);
  const [series, setSeries] = useState<Json | null>(null);
  const [error, setError] = useState("");

  useEffect(() => {
    const until = new Date();
    const since = new Date(until.getTime() - days * DAY);
    const period = `since=${since.toISOString()}&until=${until.toISOString()}`;
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    const base = `/v1/tenants/${ctx.tenant}/analytics`;
    Promise.all([
      ctx.api.get(`${base}/summary?${period}`),
      ctx.api.get(`${base}/timeseries?${period}&bucket=${bucket}&tz=${encodeURIComponent(tz)}`),
    ])
      .then(([s, t]) => (setSummary(s), setSeries(t), setError("")))
      .catch((e) => setError(e.message));
  }, [ctx.api, ctx.tenant, days, bucket]);

  if (error) return <p className="error pad">{error}</p>;
  if (!summary || !series) return <div className="empty">Loading…</div>;

  const labels: string[] = [...new Set<string>(series.messages.map((r: Json) => r.at))].sort();
  const label = (at: string) => (bucket === "hour" ? at.slice(11, 16) : at.slice(5, 10));
  const pick = (rows: Json[], key: string) => labels.map((at) => Number(rows.find((r) => r.at === at)?.[key] ?? 0));
  const tiers = [...new Set<string>(series.tiers.map((r: Json) => r.tier))];
  const tierSeries = (key: string) =>
    tiers.map((tier) => ({
      name: tier,
      color: TIER_COLORS[tier] ?? "#868e96",
      values: labels.map((at) => Number(series.tiers.find((r: Json) => r.at === at && r.tier === tier)?.[key] ?? 0)),
    }));
  const budget = summary.budget;

  return (
    <div className="page analytics">
      <div className="toolbar">
        <h1>Analytics</h1>
        <select aria-label="Period" value={days} onChange={(e) => setDays(Number(e.target.value))}>
          <option value={1}>last 24 hours</option>
          <option value={7}>last 7 days</option>
          <option value={30}>last 30 days</option>
          <option value={90}>last 90 days</option>
        </select>
        <select aria-label="Bucket" value={bucket} onChange={(e) => setBucket(e.target.value)}>
          <option value="hour">per hour</option>
          <option value="day">per day</option>
          <option value="week">per week</option>
        </select>
        <span className="muted">channel: WhatsApp</span>
      </div>
      <div className="cards" data-testid="kpis">
        <Card label="Conversations" value={summary.conversations} hint={`${summary.statuses.bot} bot · ${summary.statuses.human} human · ${summary.statuses.closed} closed now`} />
        <Card label="Resolved by the assistant" value={pct(summary.resolution_rate)} />
        <Card label="Handed to a human" value={pct(summary.handoff_rate)} hint={`by the assistant; ${summary.taken_over} taken over by a person`} />
        <Card label="First response p50 / p95" value={`${ms(summary.first_response_ms.p50)} / ${ms(summary.first_response_ms.p95)}`} />
        <Card label="Reply time p50 / p95" value={`${ms(summary.reply_ms.p50)} / ${ms(summary.reply_ms.p95)}`} hint={`humans: ${ms(summary.human_reply_ms.p50)} p50`} />
        <Card label="Cost" value={money(summary.cost_usd, 4)} hint={`${summary.tokens} tokens`} />
        <Card label="Cost per reply" value={money(summary.cost_per_reply_usd, 5)} />
        <Card label="Cost per conversation" value={money(summary.cost_per_conversation_usd, 5)} />
        <Card label="Cost per booking" value={money(summary.cost_per_booking_usd, 4)} />
        <Card label="Cache hit rate" value={pct(summary.cache_hit_rate)} />
        <Card label="Bookings" value={summary.bookings.active} hint={`${summary.bookings.cancelled} cancelled`} />
        <Card
          label="Revenue"
          value={summary.revenue.map((r: Json) => `${(r.amount_minor / 100).toFixed(2)} ${r.currency}`).join(" · ") || "–"}
          hint={`${summary.revenue.reduce((n: number, r: Json) => n + r.payments, 0)} payments`}
        />
        <Card label="Dead letters open" value={summary.dead_letters.open} hint={`${summary.dead_letters.replayed} replayed · ${summary.dead_letters.discarded} discarded`} />
        <Card
          label="Model budget this month"
          value={budget.monthly_usd == null ? money(budget.spent_this_month_usd, 2) : `${money(budget.spent_this_month_usd, 2)} of ${money(budget.monthly_usd, 2)}`}
          hint={budget.monthly_usd == null ? "no cap set" : pct(budget.spent_this_month_usd / budget.monthly_usd)}
        />
      </div>
      <div className="charts">
        <StackedBars
          title="Messages"
          labels={labels.map(label)}
          series={[
            { name: "from leads", color: "#adb5bd", values: pick(series.messages, "messages_in") },
            { name: "assistant replies", color: "#2f9e44", values: pick(series.messages, "bot_replies") },
            { name: "human replies", color: "#e64980", values: pick(series.messages, "human_replies") },
          ]}
        />
        <StackedBars title="Replies by tier" labels={labels.map(label)} series={tierSeries("replies")} />
        <StackedBars title="Cost by tier (USD)" labels={labels.map(label)} series={tierSeries("cost_usd")} format={(v) => `$${v.toFixed(3)}`} />
        <Lines
          title="Reply time"
          labels={labels.map(label)}
          format={(v) => ms(v)}
          series={[
            { name: "p50", color: "#1971c2", values: labels.map((at) => series.messages.find((r: Json) => r.at === at)?.reply_ms.p50 ?? NaN) },
            { name: "p95", color: "#f08c00", values: labels.map((at) => series.messages.find((r: Json) => r.at === at)?.reply_ms.p95 ?? NaN) },
          ]}
        />
      </div>
      <table className="tiers">
        <thead>
          <tr>
            <th>Tier</th>
            <th>Replies</th>
            <th>Cost</th>
            <th>Cache hits</th>
            <th>Avg. latency</th>
            <th>Tokens</th>
          </tr>
        </thead>
        <tbody>
          {summary.by_tier.map((t: Json) => (
            <tr key={t.tier}>
              <td>
                <span className="badge tier">{t.tier}</span>
              </td>
              <td>{t.replies}</td>
              <td>{money(t.cost_usd, 5)}</td>
              <td>{t.cache_hits}</td>
              <td>{ms(t.avg_latency_ms)}</td>
              <td>{t.tokens}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Card({ label, value, hint }: { label: string; value: string | number; hint?: string }) {
  return (
    <div className="card">
      <div className="label">{label}</div>
      <div className="value">{value}</div>
      {hint && <div className="muted">{hint}</div>}
    </div>
  );
}
