// modelgate dashboard: pages drawn from the sidecar's JSON admin API.
// The admin token lives in this tab's sessionStorage and travels only in the
// Authorization header; it is never put in a URL or a cookie.
"use strict";

const TOKEN_KEY = "modelgate.admin_token";
const app = { readOnly: false, token: sessionStorage.getItem(TOKEN_KEY) || "" };

// ---- small helpers -------------------------------------------------------------------

// el("p", {class: "x"}, "text", child, ...): children are text or nodes, never HTML.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const fmt = (v) => (v === null || v === undefined ? "–" : Charts.fmt(v));
const pct = (v) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : `${(100 * v).toFixed(2)}%`);
function when(ms) {
  if (ms === null || ms === undefined) return "–";
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}
function ago(ms) {
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 0) return "in the future (replayed clock)";
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}
function duration(s) {
  if (s % 86400 === 0) return `${s / 86400} day${s === 86400 ? "" : "s"}`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}
const badge = (state, text) => el("span", { class: `badge state-${state}` }, text || state);

function table(caption, headers, rows, attrs) {
  const head = el("tr", {}, headers.map((h) => el("th", { scope: "col", class: h.num ? "num" : null }, h.label || h)));
  const body = rows.map((r) => el("tr", r.attrs || {}, r.cells.map((c, i) =>
    el("td", { class: headers[i] && headers[i].num ? "num" : null }, c))));
  return el("div", { class: "table-wrap" },
    el("table", attrs || {}, caption ? el("caption", {}, caption) : null, el("thead", {}, head), el("tbody", {}, body)));
}

function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function json(value) {
  return el("pre", {}, JSON.stringify(value, null, 2));
}

// ---- the API -------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.reason) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// Reads send the token unless the sidecar allows reading without it; writes always do.
async function api(path, options) {
  const opts = options || {};
  const write = opts.method && opts.method !== "GET";
  const headers = { Accept: "application/json" };
  if (app.token && (write || !app.readOnly)) headers.Authorization = `Bearer ${app.token}`;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: opts.method || "GET", headers, credentials: "omit", cache: "no-store",
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// A read that answers null for "this sidecar has no lifecycle" (409) instead of failing.
async function optional(path) {
  try { return await api(path); } catch (e) {
    if (e instanceof ApiError && (e.status === 409 || e.status === 404)) return null;
    throw e;
  }
}

function failure(e) {
  if (e instanceof ApiError && e.status === 401) {
    return el("div", { class: "alert", role: "alert", id: "auth-error" },
      app.token
        ? "The sidecar refused the admin token. Enter the right one above; nothing was changed."
        : "This sidecar needs the admin token to show this page. Enter it above (it stays in this tab).");
  }
  return el("div", { class: "alert", role: "alert" }, `Could not load: ${e.message}`);
}

// ---- token form ----------------------------------------------------------------------

function showTokenState(text) {
  document.getElementById("token-state").textContent = text;
}

async function checkToken() {
  if (!app.token) {
    showTokenState(app.readOnly ? "read-only view" : "no token");
    return;
  }
  try {
    const r = await fetch("/v1/status", { headers: { Authorization: `Bearer ${app.token}` }, credentials: "omit" });
    showTokenState(r.ok ? "token accepted" : (r.status === 401 ? "token refused" : `check failed (${r.status})`));
  } catch (_) {
    showTokenState("cannot reach the sidecar");
  }
}

function setupToken() {
  const form = document.getElementById("token-form");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("token");
    app.token = input.value.trim();
    input.value = "";
    if (app.token) sessionStorage.setItem(TOKEN_KEY, app.token); else sessionStorage.removeItem(TOKEN_KEY);
    checkToken();
    render();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    app.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    checkToken();
    render();
  });
}

// ---- pages ---------------------------------------------------------------------------

const pages = {};

pages.overview = async () => {
  const [status, experiments, lifecycle, runs] = await Promise.all([
    api("/v1/status"), api("/v1/experiments"), optional("/v1/lifecycle"), api("/v1/runs?limit=100"),
  ]);
  const out = [el("h1", {}, "Overview")];
  const grid = el("div", { class: "grid" });
  out.push(grid);

  // Production model.
  if (lifecycle) {
    const p = lifecycle.production;
    const since = lifecycle.production_since;
    grid.append(el("section", { class: "card", id: "production", "aria-labelledby": "h-production" },
      el("h2", { id: "h-production" }, "Production model"),
      p ? facts([
        ["Model", el("strong", {}, p.reference)],
        ["Since", since ? `${when(since.at_ms)} (${ago(since.at_ms)})` : "–"],
        ["By", lifecycle.production_run !== null && lifecycle.production_run !== undefined
          ? el("a", { href: "#runs" }, `run ${lifecycle.production_run}`) : (since ? since.actor : "–")],
        ["Why", since ? since.reason : "–"],
        ["Experiment", `${lifecycle.experiment} (production variant “${lifecycle.production_variant}”)`],
      ]) : el("p", {}, `${lifecycle.model} has no production model yet.`)));
  }

  // Open alerts.
  const alerts = [];
  if (lifecycle) {
    for (const d of lifecycle.drift.latest || []) {
      if (d.verdict === "drift") alerts.push(el("li", { "data-alert": "drift" }, "Drift: ", el("a", { href: "#drift" }, d.feature),
        ` (KS ${fmt(d.ks)} ± ${fmt(d.ks_error_bound)}, PSI ${fmt(d.psi)})`));
    }
    const check = lifecycle.last_rollout_check;
    if (check && check.action && check.action.action === "sample_ratio_mismatch") {
      alerts.push(el("li", { "data-alert": "srm" }, `Sample ratio mismatch in the rollout (p = ${fmt(check.action.p_value)})`));
    }
  }
  for (const r of runs.runs.filter((x) => x.state === "pending_review")) {
    alerts.push(el("li", { "data-alert": "review" }, el("a", { href: "#reviews" }, `Run ${r.id}`), " waits for a review"));
  }
  const lastRun = runs.runs[0];
  if (lastRun && lastRun.state === "failed") {
    alerts.push(el("li", { "data-alert": "failed" }, el("a", { href: "#runs" }, `Run ${lastRun.id}`), " failed"));
  }
  grid.append(el("section", { class: "card", id: "alerts", "aria-labelledby": "h-alerts" },
    el("h2", { id: "h-alerts" }, `Open alerts (${alerts.length})`),
    alerts.length ? el("ul", { class: "alerts" }, alerts) : el("p", { class: "muted" }, "None.")));

  // Traffic split, per experiment.
  const observed = {};
  for (const v of experiments.variants) {
    (observed[v.experiment] = observed[v.experiment] || []).push(v);
  }
  const splitSection = el("section", { class: "card", id: "split", "aria-labelledby": "h-split" },
    el("h2", { id: "h-split" }, "Traffic split"));
  for (const s of experiments.split || []) {
    const seen = observed[s.experiment] || [];
    const total = seen.reduce((a, v) => a + v.requests, 0);
    splitSection.append(table(`${s.experiment}: ${s.strategy}${s.coverage < 1 ? `, ${pct(s.coverage)} of keys` : ""}`,
      ["Variant", "Model", { label: "Configured", num: true }, { label: "Observed", num: true }],
      s.variants.map((v) => {
        const assigned = experiments.models[`${s.experiment}/${v.variant}`];
        const got = seen.find((x) => x.variant === v.variant);
        return {
          attrs: { "data-experiment": s.experiment, "data-variant": v.variant },
          cells: [v.variant, (assigned && assigned.reference) || v.model || "–",
            v.percent === null ? "rest" : `${fmt(v.percent)}%`,
            got && total ? `${(100 * got.requests / total).toFixed(1)}% of ${total}` : "–"],
        };
      }), { class: "split" }));
  }
  if (!(experiments.split || []).length) splitSection.append(el("p", { class: "muted" }, "No experiments configured."));
  grid.append(splitSection);

  // Agents.
  const agents = status.agents.slice().sort((a, b) => b.last_report_ms - a.last_report_ms);
  const last = agents.length ? agents[0].last_report_ms : null;
  out.push(el("section", { class: "card", id: "agents", "aria-labelledby": "h-agents" },
    el("h2", { id: "h-agents" }, `Agents reporting: ${agents.length}`),
    el("p", {}, last ? `Last report ${when(last)} (${ago(last)}). ${status.ingest.accepted} reports accepted since the sidecar started.` : "No agent has reported yet."),
    agents.length ? table(null, ["Agent", { label: "Reports", num: true }, "First report", "Last report"],
      agents.map((a) => ({ attrs: { "data-agent": a.agent_id }, cells: [a.agent_id, a.reports, when(a.first_report_ms), when(a.last_report_ms)] })),
      { id: "agents-table" }) : null));
  return out;
};

pages.drift = async () => {
  const series = await optional("/v1/drift?points=24");
  const out = [el("h1", {}, "Drift")];
  if (!series) return out.concat(el("p", {}, "This sidecar has no lifecycle, so there is no reference to compare with."));
  const th = series.thresholds;
  const ref = series.reference;
  out.push(el("p", { id: "reference" },
    ref ? [`Inputs of variant “${series.variant}” compared with the training data of `, el("strong", {}, ref.reference),
      ` (records ${when(ref.trained_from_ms)} to ${when(ref.trained_to_ms)}), in windows of ${duration(series.window_s)}, one point every ${duration(series.step_s)}. `]
      : `${series.model} has no production model yet, so there is no reference window. `,
    `KS says drift at D − bound ≥ ${fmt(th.ks_min_effect)} when significant (α = ${fmt(th.alpha)}); PSI warns at ${fmt(th.psi_warning)} and says drift at ${fmt(th.psi_drift)}. `,
    "Squares are drift, triangles warnings, circles neither."));
  if (!series.points.length) return out.concat(el("p", { class: "notice" }, "No window has feature rows yet."));
  const list = el("div", { class: "grid wide" });
  const lastEnd = series.points[series.points.length - 1].end_ms;
  series.features.forEach((feature, i) => {
    const points = series.points.map((p) => ({ p, f: p.features[i] })).filter((x) => x.f);
    const latest = points.length ? points[points.length - 1].f : null;
    const detail = el("div", { class: "distribution", "data-feature": feature });
    const button = el("button", {
      type: "button", "aria-expanded": "false", "data-feature": feature,
      onclick: async () => {
        if (button.getAttribute("aria-expanded") === "true") {
          detail.replaceChildren(); button.setAttribute("aria-expanded", "false"); return;
        }
        button.setAttribute("aria-expanded", "true");
        detail.replaceChildren(el("p", {}, "Loading…"));
        try { detail.replaceChildren(...distribution(await api(`/v1/drift/features/${encodeURIComponent(feature)}?end_ms=${lastEnd}`))); }
        catch (e) { detail.replaceChildren(failure(e)); }
      },
    }, "Distributions");
    const card = el("article", { class: "card feature", id: `feature-${feature}`, "data-feature": feature, "aria-labelledby": `h-f-${i}` },
      el("div", { class: "feature-head" },
        el("h2", { id: `h-f-${i}` }, feature, " ", latest ? badge(latest.verdict) : null),
        button),
      latest ? el("p", { class: "muted" }, `Latest: KS ${fmt(latest.ks)} ± ${fmt(latest.ks_error_bound)}, PSI ${fmt(latest.psi)}, p = ${fmt(latest.p_value)}, ${latest.n_current} rows.`) : null);
    if (points.some((x) => x.f.ks !== null)) {
      card.append(el("h3", {}, "KS distance with its error bound"), Charts.series({
        label: `KS D of ${feature} over time`, metric: "ks", limit: th.ks_min_effect,
        thresholds: [{ value: th.ks_min_effect, label: "min effect", dash: "6 3" }],
        points: points.map(({ p, f }) => ({ t: p.end_ms, value: f.ks, err: f.ks_error_bound, verdict: f.verdict,
          label: `${when(p.end_ms)}: D = ${fmt(f.ks)} ± ${fmt(f.ks_error_bound)}, ${f.verdict}, ${p.rows} rows` })),
      }));
    }
    card.append(el("h3", {}, "PSI"), Charts.series({
      label: `PSI of ${feature} over time`, metric: "psi", limit: th.psi_drift,
      thresholds: [{ value: th.psi_warning, label: "warning", dash: "2 3" }, { value: th.psi_drift, label: "drift", dash: "6 3" }],
      points: points.map(({ p, f }) => ({ t: p.end_ms, value: f.psi, verdict: f.verdict,
        label: `${when(p.end_ms)}: PSI ${fmt(f.psi)}, ${f.verdict}, ${p.rows} rows` })),
    }));
    card.append(el("details", {}, el("summary", {}, "Numbers"), table(null,
      ["Window end", { label: "Rows", num: true }, { label: "KS", num: true }, { label: "± bound", num: true }, { label: "PSI", num: true }, "Verdict"],
      points.map(({ p, f }) => ({ cells: [when(p.end_ms), p.rows, fmt(f.ks), fmt(f.ks_error_bound), fmt(f.psi), f.verdict] })))));
    card.append(detail);
    list.append(card);
  });
  out.push(list);
  return out;
};

function distribution(d) {
  const out = [el("h3", {}, `${d.feature}: reference vs current`),
    el("p", { class: "muted" }, `Reference: ${d.reference_window.reference}'s training data (${d.reference.count} values). Current: ${when(d.current_from_ms)} to ${when(d.current_to_ms)} (${d.current.count} values).`)];
  if (d.kind === "numeric") {
    // Both curves span the same range: 0 before their first value, flat after their last
    // (a reference that is one repeated value is then a visible step, not a dot).
    const xs = d.reference.cdf.concat(d.current.cdf).map(([x]) => x);
    const lo = Math.min(...xs), hi = Math.max(...xs);
    const span = (cdf) => (cdf.length ? [{ x: lo, y: 0 }].concat(cdf.map(([x, y]) => ({ x, y })), [{ x: hi, y: cdf[cdf.length - 1][1] }]) : []);
    out.push(Charts.lines({
      label: `Cumulative distributions of ${d.feature}`, step: true, yMin: 0, yMax: 1,
      series: [
        { name: "reference", marker: null, points: span(d.reference.cdf) },
        { name: "current", dash: "6 4", marker: null, points: span(d.current.cdf) },
      ],
    }));
  } else {
    const values = [...new Set(d.reference.shares.map((s) => s[0]).concat(d.current.shares.map((s) => s[0])))];
    const share = (list, v) => { const hit = list.find((s) => s[0] === v); return hit ? hit[1] : 0; };
    out.push(table("Shares per category", ["Value", { label: "Reference", num: true }, { label: "Current", num: true }],
      values.map((v) => ({ cells: [v, pct(share(d.reference.shares, v)), pct(share(d.current.shares, v))] }))));
  }
  return out;
}

pages.experiments = async () => {
  const [experiments, lifecycle, rolloutRows] = await Promise.all([
    api("/v1/experiments"), optional("/v1/lifecycle"), api("/v1/audit?kind=rollout&limit=200"),
  ]);
  const out = [el("h1", {}, "Experiments and rollouts")];
  const names = (experiments.config.experiments || []).map((e) => e.name);
  for (const name of names) {
    const variants = experiments.variants.filter((v) => v.experiment === name);
    const section = el("section", { class: "card", "data-experiment": name, "aria-labelledby": `h-e-${name}` },
      el("h2", { id: `h-e-${name}` }, name));
    section.append(table("Totals over the stored windows",
      ["Variant", "Model", { label: "Requests", num: true }, { label: "Error rate", num: true },
        { label: "p50 ms", num: true }, { label: "p99 ms", num: true }, { label: "Primary metric", num: true }],
      variants.map((v) => ({
        attrs: { "data-variant": v.variant },
        cells: [v.variant, v.model || "–", v.requests, pct(v.error_rate), fmt(v.latency_p50_ms), fmt(v.latency_p99_ms),
          v.trials ? `${pct(v.successes / v.trials)} of ${v.trials}` : (v.outcome_count ? `${fmt(v.outcome_mean)} (n ${v.outcome_count})` : "–")],
      }))));
    try {
      const s = await api(`/v1/experiments/${encodeURIComponent(name)}/series?points=30`);
      const drawn = s.variants.filter((v) => v.points.some((p) => p.mean !== null));
      if (drawn.length) {
        section.append(el("h3", {}, `Primary metric over time, with its always-valid ${pct(1 - s.alpha)} interval`),
          Charts.lines({
            label: `Primary metric of ${name} per variant over time`, xIsTime: true,
            series: drawn.map((v, i) => ({
              name: v.variant, dash: i === 0 ? null : "6 4", marker: i === 0 ? "circle" : "square",
              points: v.points.filter((p) => p.mean !== null).map((p) => ({ x: p.end_ms, y: p.mean, lower: p.lower, upper: p.upper })),
            })),
          }));
      } else {
        section.append(el("p", { class: "muted" }, "No outcomes recorded yet, so no primary metric to draw."));
      }
    } catch (e) { section.append(failure(e)); }
    out.push(section);
  }
  if (lifecycle) out.push(rollout(lifecycle, rolloutRows.audit));
  return out;
};

function rollout(lifecycle, rows) {
  const section = el("section", { class: "card", id: "rollout", "aria-labelledby": "h-rollout" },
    el("h2", { id: "h-rollout" }, "Rollout"));
  const cfg = lifecycle.rollout_config;
  const current = lifecycle.rollout;
  section.append(facts([
    ["Strategy", `${cfg.strategy}; steps ${cfg.steps.map((s) => `${s}%`).join(" → ") || "–"}`],
    ["In progress", current ? `${current.reference}: step ${current.step + 1} of ${cfg.steps.length} (${cfg.steps[current.step]}%), since ${when(current.step_started_ms)}` : "none"],
  ]));
  const check = lifecycle.last_rollout_check;
  if (check) {
    const srmBad = check.action.action === "sample_ratio_mismatch";
    section.append(el("h3", {}, "Last guardrail check"), facts([
      ["Step", `${fmt(check.percent)}% to the candidate; requests ${check.step_requests[0]} vs ${check.step_requests[1]}`],
      ["Error rates", `${pct(check.error_rates[0])} production vs ${pct(check.error_rates[1])} candidate`],
      ["Latency p99", `${fmt(check.latency_p99_ms[0])} vs ${fmt(check.latency_p99_ms[1])} ms`],
      ["SRM", el("span", { id: "srm-status" }, srmBad ? badge("bad", "mismatch") : badge("ok", "ok"),
        ` p = ${fmt(check.srm_p_value)} (alert below ${fmt(cfg.srm_alpha)})`)],
      ["Action", check.action.action.replace(/_/g, " ") + (check.action.reason ? `: ${check.action.reason}` : "")],
    ]));
  } else {
    section.append(el("p", { class: "muted", id: "srm-status" }, "SRM: no rollout check yet."));
  }
  const ordered = rows.slice().reverse();
  section.append(el("h3", {}, "Timeline"));
  if (!ordered.length) {
    section.append(el("p", { class: "muted" }, "No rollout has started yet."));
  } else {
    const bad = (k) => /rollback|srm|inconclusive/.test(k);
    section.append(el("ol", { class: "timeline" }, ordered.map((r) => {
      const d = r.detail || {};
      const c = d.check || d;
      const parts = [];
      if (c.percent !== undefined) parts.push(`${fmt(c.percent)}% to the candidate`);
      if (c.error_rates) parts.push(`error rates ${pct(c.error_rates[0])} vs ${pct(c.error_rates[1])}`);
      if (c.latency_p99_ms) parts.push(`p99 ${fmt(c.latency_p99_ms[0])} vs ${fmt(c.latency_p99_ms[1])} ms`);
      if (c.srm_p_value !== undefined && c.srm_p_value !== null) parts.push(`SRM p = ${fmt(c.srm_p_value)}`);
      return el("li", { class: bad(r.kind) ? "state-bad" : "state-ok", "data-kind": r.kind },
        el("strong", {}, r.kind.replace("rollout.", "")), ` ${r.subject} · ${when(r.at_ms)}`,
        parts.length ? el("div", { class: "muted" }, parts.join("; ")) : null);
    })));
  }
  return section;
}

function evaluation(report) {
  if (!report) return el("p", { class: "muted" }, "No evaluation report.");
  const metrics = ["accuracy", "auc", "log_loss", "f1", "rmse", "mae"].filter((m) => report.candidate && report.candidate[m] !== null && report.candidate[m] !== undefined);
  const c = report.comparison;
  return el("div", { class: "evaluation" },
    table(`Holdout evaluation (primary: ${report.primary})`, ["Metric", { label: "Candidate", num: true }, { label: "Production", num: true }],
      metrics.map((m) => ({ cells: [m === report.primary ? el("strong", {}, m) : m, fmt(report.candidate[m]), report.production ? fmt(report.production[m]) : "–"] }))),
    c ? el("p", {}, `Improvement on ${c.primary}: `, el("strong", {}, c.relative ? pct(c.improvement) : fmt(c.improvement)),
      ` (${fmt(c.candidate)} vs ${fmt(c.production)})`) : null);
}

function evidence(run) {
  const e = run.evidence || {};
  if (Array.isArray(e.features)) {
    return table(`Trigger: ${run.trigger}`, ["Feature", { label: "KS", num: true }, { label: "PSI", num: true }, "Verdict"],
      e.features.map((f) => ({ cells: [f.feature, f.ks === null ? "–" : `${fmt(f.ks)} ± ${fmt(f.ks_error_bound)}`, fmt(f.psi), f.verdict] })));
  }
  return el("div", {}, el("p", {}, `Trigger: ${run.trigger}`), json(e));
}

function runDetails(run, open) {
  const outcome = run.outcome || {};
  return el("details", { class: "card run", "data-run": run.id, "data-state": run.state, open: open || null },
    el("summary", {}, el("strong", {}, `Run ${run.id}`), " ", badge(run.state), ` ${run.trigger} · ${when(run.started_ms)}`),
    el("h3", {}, "Steps"),
    table(null, ["#", "Step", "State", "Started", "Finished"], run.steps.map((s) => ({
      cells: [s.seq, s.name, badge(s.state), when(s.started_ms), when(s.finished_ms)],
    }))),
    el("h3", {}, "Evidence"), evidence(run),
    el("h3", {}, "Evaluation"), evaluation(outcome.evaluation),
    el("h3", {}, "Decision"),
    el("p", {}, badge(run.state), " ", outcome.reason || outcome.error || (outcome.promoted ? `${outcome.promoted} promoted` : "")));
}

pages.runs = async () => {
  const runs = await api("/v1/runs?limit=100");
  const out = [el("h1", {}, "Runs")];
  if (!runs.runs.length) return out.concat(el("p", { class: "muted" }, "No pipeline run yet."));
  runs.runs.forEach((r, i) => out.push(runDetails(r, i === 0)));
  return out;
};

pages.reviews = async () => {
  const runs = await api("/v1/runs?limit=200");
  const pending = runs.runs.filter((r) => r.state === "pending_review");
  const out = [el("h1", {}, "Reviews")];
  if (!app.token) {
    out.push(el("p", { class: "notice" }, "Approving or rejecting needs the admin token: enter it above once; it stays in this tab."));
  }
  if (!pending.length) return out.concat(el("p", { class: "muted", id: "no-reviews" }, "No run waits for a review."));
  for (const run of pending) {
    const message = el("div", { class: "result", role: "status", "aria-live": "polite" });
    const reason = el("textarea", { id: `reason-${run.id}`, name: "reason", required: true, maxlength: "500" });
    const decide = async (verb) => {
      message.replaceChildren();
      if (!reason.value.trim()) {
        message.replaceChildren(el("div", { class: "alert", role: "alert" }, "A reason is required."));
        reason.focus();
        return;
      }
      if (!app.token) {
        message.replaceChildren(el("div", { class: "alert", role: "alert" }, "Enter the admin token above first; nothing was changed."));
        return;
      }
      try {
        const r = await api(`/v1/runs/${run.id}/${verb}`, { method: "POST", body: { reason: reason.value.trim() } });
        message.replaceChildren(el("p", { class: "notice", "data-outcome": r.state }, `Run ${run.id} ${verb === "approve" ? "approved" : "rejected"}: now ${r.state}.`));
        for (const b of form.querySelectorAll("button")) b.disabled = true;
        reason.disabled = true;
      } catch (e) {
        const text = e.status === 401
          ? "The sidecar refused the admin token; nothing was changed."
          : `The sidecar refused: ${e.message}`;
        message.replaceChildren(el("div", { class: "alert", role: "alert", "data-error": String(e.status || "") }, text));
      }
    };
    const form = el("form", { class: "review", novalidate: true, "data-run": run.id, onsubmit: (ev) => { ev.preventDefault(); decide("approve"); } },
      el("label", { for: `reason-${run.id}` }, "Reason (required, goes into the audit log)"), reason,
      el("div", { class: "buttons" },
        el("button", { type: "submit", class: "primary approve" }, "Approve"),
        el("button", { type: "button", class: "reject", onclick: () => decide("reject") }, "Reject")),
      message);
    out.push(el("article", { class: "card review", "data-run": run.id, "aria-labelledby": `h-r-${run.id}` },
      el("h2", { id: `h-r-${run.id}` }, `Run ${run.id}: ${(run.outcome && run.outcome.candidate) ? `candidate version ${run.outcome.candidate}` : "candidate"}`),
      el("p", {}, (run.outcome && run.outcome.reason) || ""),
      evaluation(run.outcome && run.outcome.evaluation),
      el("details", {}, el("summary", {}, "Trigger evidence"), evidence(run)),
      form));
  }
  return out;
};

pages.audit = async (params) => {
  const q = new URLSearchParams();
  for (const k of ["kind", "subject", "limit"]) if (params.get(k)) q.set(k, params.get(k));
  if (!q.get("limit")) q.set("limit", "200");
  const [rows, lifecycle] = await Promise.all([api(`/v1/audit?${q}`), optional("/v1/lifecycle")]);
  const out = [el("h1", {}, "Audit log")];
  const field = (name, label, attrs) => el("label", {}, label, el("input", { name, value: params.get(name) || "", ...attrs }));
  const form = el("form", { class: "filters", role: "search", onsubmit: (ev) => {
    ev.preventDefault();
    const f = new URLSearchParams();
    for (const [k, v] of new FormData(ev.target)) if (String(v).trim()) f.set(k, String(v).trim());
    location.hash = `audit?${f}`;
  } },
  field("kind", "Kind (prefix, e.g. model or run.approve)", { list: "kinds" }),
  field("subject", "Subject (e.g. elec@2)"),
  field("limit", "At most", { type: "number", min: "1", max: "10000" }),
  el("datalist", { id: "kinds" }, ["model", "run", "trigger", "rollout", "control", "notify", "agent"].map((k) => el("option", { value: k }))),
  el("button", { type: "submit" }, "Filter"));
  out.push(form);
  out.push(table(`${rows.audit.length} rows, newest first`, ["#", "When", "Actor", "Kind", "Subject", "Detail"],
    rows.audit.map((r) => ({
      attrs: { "data-kind": r.kind, "data-id": r.id },
      cells: [r.id, when(r.at_ms), r.actor, r.kind, r.subject,
        el("details", {}, el("summary", {}, summary(r.detail)), json(r.detail))],
    })), { id: "audit-table" }));
  if (lifecycle) {
    out.push(el("h2", {}, `Alias history of ${lifecycle.model}`), table("Which version was production (or previous) when, newest first",
      ["When", "Alias", "From", "To", "Actor", "Reason"],
      lifecycle.alias_history.slice().sort((a, b) => b.at_ms - a.at_ms).map((c) => ({
        cells: [when(c.at_ms), c.alias, c.from_version === null ? "–" : `${lifecycle.model}@${c.from_version}`, `${lifecycle.model}@${c.to_version}`, c.actor, c.reason],
      })), { id: "alias-history" }));
  }
  return out;
};

function summary(detail) {
  if (!detail || typeof detail !== "object") return String(detail);
  const keys = ["reason", "to", "run_id", "features", "action"];
  for (const k of keys) {
    if (detail[k] !== undefined && detail[k] !== null) {
      const v = detail[k];
      if (Array.isArray(v)) return `${k}: ${v.length}`;
      return `${k}: ${typeof v === "object" ? JSON.stringify(v).slice(0, 60) : String(v).slice(0, 80)}`;
    }
  }
  return JSON.stringify(detail).slice(0, 60);
}

// ---- routing -------------------------------------------------------------------------

function route() {
  const raw = location.hash.replace(/^#/, "") || "overview";
  const [name, query] = raw.split("?");
  return { name: pages[name] ? name : "overview", params: new URLSearchParams(query || "") };
}

let generation = 0;
async function render() {
  const { name, params } = route();
  const mine = ++generation;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.title = `modelgate · ${name}`;
  const view = document.getElementById("view");
  view.setAttribute("aria-busy", "true");
  let content;
  try { content = await pages[name](params); } catch (e) { content = [el("h1", {}, name), failure(e)]; }
  if (mine !== generation) return;
  view.replaceChildren(...content);
  view.setAttribute("data-page", name);
  view.removeAttribute("aria-busy");
}

async function start() {
  setupToken();
  try {
    const info = await (await fetch("/v1/dashboard", { credentials: "omit" })).json();
    app.readOnly = Boolean(info.read_only);
    document.getElementById("version").textContent = info.version;
  } catch (_) { app.readOnly = false; }
  checkToken();
  window.addEventListener("hashchange", render);
  render();
}

document.addEventListener("DOMContentLoaded", start);
