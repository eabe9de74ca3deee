// Small SVG charts: enough for a dashboard without a charting library.

export interface Series {
  name: string;
  color: string;
  values: number[];
}

const W = 560;
const H = 180;
const PAD = { left: 44, right: 8, top: 10, bottom: 28 };

function scale(max: number): (v: number) => number {
  const top = max > 0 ? max : 1;
  return (v) => PAD.top + (H - PAD.top - PAD.bottom) * (1 - v / top);
}

function Axis({ labels, max, format }: { labels: string[]; max: number; format: (v: number) => string }) {
  const y = scale(max);
  const step = labels.length > 12 ? Math.ceil(labels.length / 12) : 1;
  const x = (i: number) => PAD.left + ((W - PAD.left - PAD.right) * (i + 0.5)) / Math.max(labels.length, 1);
  return (
    <g className="axis">
      {[0, 0.5, 1].map((f) => (
        <g key={f}>
          <line x1={PAD.left} x2={W - PAD.right} y1={y(max * f)} y2={y(max * f)} />
          <text x={PAD.left - 4} y={y(max * f) + 4} textAnchor="end">
            {format(max * f)}
          </text>
        </g>
      ))}
      {labels.map((l, i) =>
        i % step === 0 ? (
          <text key={i} x={x(i)} y={H - 8} textAnchor="middle">
            {l}
          </text>
        ) : null,
      )}
    </g>
  );
}

export function StackedBars({
  labels,
  series,
  format = (v) => v.toFixed(0),
  title,
}: {
  labels: string[];
  series: Series[];
  format?: (v: number) => string;
  title: string;
}) {
  const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] ?? 0), 0));
  const max = Math.max(0, ...totals);
  const y = scale(max);
  const band = (W - PAD.left - PAD.right) / Math.max(labels.length, 1);
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={title}>
        <Axis labels={labels} max={max} format={format} />
        {labels.map((_, i) => {
          let base = 0;
          return series.map((s) => {
            const v = s.values[i] ?? 0;
            const top = y(base + v);
            const rect = (
              <rect
                key={`${s.name}-${i}`}
                x={PAD.left + band * i + band * 0.15}
                width={band * 0.7}
                y={top}
                height={Math.max(0, y(base) - top)}
                fill={s.color}
              >
                <title>{`${labels[i]} · ${s.name}: ${format(v)}`}</title>
              </rect>
            );
            base += v;
            return rect;
          });
        })}
      </svg>
      <Legend series={series} />
    </figure>
  );
}

export function Lines({
  labels,
  series,
  format = (v) => v.toFixed(0),
  title,
}: {
  labels: string[];
  series: Series[];
  format?: (v: number) => string;
  title: string;
}) {
  const max = Math.max(0, ...series.flatMap((s) => s.values.filter((v) => Number.isFinite(v))));
  const y = scale(max);
  const x = (i: number) => PAD.left + ((W - PAD.left - PAD.right) * (i + 0.5)) / Math.max(labels.length, 1);
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={title}>
        <Axis labels={labels} max={max} format={format} />
        {series.map((s) => (
          <g key={s.name}>
            <polyline
              fill="none"
              stroke={s.color}
              strokeWidth={2}
              points={s.values.map((v, i) => (Number.isFinite(v) ? `${x(i)},${y(v)}` : "")).join(" ")}
            />
            {s.values.map((v, i) =>
              Number.isFinite(v) ? (
                <circle key={i} cx={x(i)} cy={y(v)} r={3} fill={s.color}>
                  <title>{`${labels[i]} · ${s.name}: ${format(v)}`}</title>
                </circle>
              ) : null,
            )}
          </g>
        ))}
      </svg>
      <Legend series={series} />
    </figure>
  );
}

function Legend({ series }: { series: Series[] }) {
  return (
    <div className="legend">
      {series.map((s) => (
        <span key={s.name}>
          <i style={{ background: s.color }} /> {s.name}
        </span>
      ))}
    </div>
  );
}
