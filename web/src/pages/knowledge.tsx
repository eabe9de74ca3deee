import { useCallback, useEffect, useState } from "react";
import type { Ctx } from "../app";
import { Json } from "../api";

export function KnowledgePage({ ctx }: { ctx: Ctx }) {
  const base = `/v1/tenants/${ctx.tenant}/knowledge`;
  const [faqs, setFaqs] = useState<Json[]>([]);
  const [docs, setDocs] = useState<Json[]>([]);
  const [editing, setEditing] = useState<Json | null>(null);
  const [question, setQuestion] = useState("");
  const [answer, setAnswer] = useState("");
  const [error, setError] = useState("");
  const [upload, setUpload] = useState<{ name: string; sent: number; job?: Json } | null>(null);

  const load = useCallback(() => {
    ctx.api.get(`${base}/faqs`).then(setFaqs).catch((e) => setError(e.message));
    ctx.api.get(`${base}/documents`).then(setDocs).catch(() => {});
  }, [ctx.api, base]);
  useEffect(load, [load]);

  const save = async () => {
    setError("");
    try {
      const body = { question, answer };
      if (editing) await ctx.api.put(`${base}/faqs/${editing.id}`, body);
      else await ctx.api.post(`${base}/faqs`, body);
      setQuestion("");
      setAnswer("");
      setEditing(null);
      load();
    } catch (e: any) {
      setError(e.message);
    }
  };

  const send = async (file: File) => {
    const form = new FormData();
    form.append("file", file);
    form.append("title", file.name);
    setUpload({ name: file.name, sent: 0 });
    try {
      const started = await ctx.api.upload(`${base}/documents`, form, (sent) => setUpload({ name: file.name, sent }));
      let job = started.job;
      while (job && !["done", "failed"].includes(job.status)) {
        setUpload({ name: file.name, sent: 1, job });
        await new Promise((r) => setTimeout(r, 500));
        job = await ctx.api.get(`${base}/jobs/${job.id}`);
      }
      setUpload({ name: file.name, sent: 1, job });
      load();
    } catch (e: any) {
      setError(e.message);
      setUpload(null);
    }
  };

  return (
    <div className="page">
      <h1>Knowledge</h1>
      {error && <p className="error">{error}</p>}
      <section className="panel">
        <h2>{editing ? "Edit FAQ" : "Add an FAQ"}</h2>
        <form
          className="stack"
          onSubmit={(e) => {
            e.preventDefault();
            save();
          }}
        >
          <input aria-label="Question" placeholder="Question a lead would ask" value={question} onChange={(e) => setQuestion(e.target.value)} />
          <textarea aria-label="Answer" placeholder="The answer the assistant gives" value={answer} onChange={(e) => setAnswer(e.target.value)} />
          <div>
            <button type="submit" disabled={!question.trim() || !answer.trim()}>
              {editing ? "Save" : "Add FAQ"}
            </button>
            {editing && (
              <button type="button" className="link" onClick={() => (setEditing(null), setQuestion(""), setAnswer(""))}>
                Cancel
              </button>
            )}
          </div>
        </form>
      </section>
      <section className="panel">
        <h2>FAQs ({faqs.length})</h2>
        <ul className="faqs" data-testid="faq-list">
          {faqs.map((f) => (
            <li key={f.id} data-testid="faq">
              <div>
                <strong>{f.question}</strong>
                <p>{f.answer}</p>
              </div>
              <div className="actions">
                <button className="link" onClick={() => (setEditing(f), setQuestion(f.question), setAnswer(f.answer))}>
                  Edit
                </button>
                <button className="link danger" onClick={() => ctx.api.del(`${base}/faqs/${f.id}`).then(load, (e) => setError(e.message))}>
                  Delete
                </button>
              </div>
            </li>
          ))}
        </ul>
      </section>
      <section className="panel">
        <h2>Documents</h2>
        <p className="muted">PDF, Markdown, HTML or text: chunked, embedded and searchable by the assistant.</p>
        <input type="file" aria-label="Upload a document" accept=".pdf,.md,.markdown,.html,.htm,.txt" onChange={(e) => e.target.files?.[0] && send(e.target.files[0])} />
        {upload && (
          <div className="upload">
            {upload.name}: <progress max={1} value={upload.job?.total ? upload.job.done / upload.job.total : upload.sent} />{" "}
            {upload.job ? `${upload.job.status} · ${upload.job.done}/${upload.job.total} chunks` : `${Math.round(upload.sent * 100)}% sent`}
          </div>
        )}
        <ul>
          {docs.map((d) => (
            <li key={d.id}>
              {d.title || d.filename} <span className="muted">({d.chunks ?? "?"} chunks)</span>{" "}
              <button className="link danger" onClick={() => ctx.api.del(`${base}/documents/${d.id}`).then(load)}>
                Delete
              </button>
            </li>
          ))}
        </ul>
      </section>
    </div>
  );
}
