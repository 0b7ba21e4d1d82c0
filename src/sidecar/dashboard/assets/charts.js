// modelgate dashboard: small SVG charts drawn from JSON (no library, no network).
// Every mark carries data-* attributes with its numbers, so the charts can be read by
// scripts and tests, and every series differs by shape or dash pattern, not only colour.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 480, H = 210, M = { top: 14, right: 96, bottom: 30, left: 52 };

  function svg(tag, attrs, parent) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function title(node, text) {
    svg("title", {}, node).textContent = text;
  }

  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) {
      if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    if (lo === Infinity) return [0, 1];
    if (lo === hi) { const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1; return [lo - pad, hi + pad]; }
    return [lo, hi];
  }

  function scale(d0, d1, r0, r1) {
    const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
    return (v) => r0 + (v - d0) * k;
  }

  function fmt(v) {
    if (!Number.isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a !== 0 && (a < 0.001 || a >= 1e6)) return v.toExponential(2);
    return Number(v.toPrecision(3)).toString();
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    return d.toISOString().slice(5, 16).replace("T", " ");
  }

  // The frame: an <svg> with axes, ticks and an accessible name.
  function frame(label, xDomain, yDomain, xIsTime) {
    const root = svg("svg", {
      viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart",
      preserveAspectRatio: "xMinYMin meet",
    });
    title(root, label);
    const x = scale(xDomain[0], xDomain[1], M.left, W - M.right);
    const y = scale(yDomain[0], yDomain[1], H - M.bottom, M.top);
    const axes = svg("g", { class: "axes" }, root);
    svg("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }, axes);
    svg("line", { x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }, axes);
    for (let i = 0; i <= 4; i++) {
      const v = yDomain[0] + (yDomain[1] - yDomain[0]) * i / 4;
      svg("line", { x1: M.left - 4, x2: M.left, y1: y(v), y2: y(v) }, axes);
      const t = svg("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" }, axes);
      t.textContent = fmt(v);
    }
    const ticks = xIsTime ? 3 : 4;
    for (let i = 0; i <= ticks; i++) {
      const v = xDomain[0] + (xDomain[1] - xDomain[0]) * i / ticks;
      svg("line", { x1: x(v), x2: x(v), y1: H - M.bottom, y2: H - M.bottom + 4 }, axes);
      const anchor = i === 0 ? "start" : (i === ticks ? "end" : "middle");
      const t = svg("text", { x: x(v), y: H - M.bottom + 16, "text-anchor": anchor }, axes);
      t.textContent = xIsTime ? fmtTime(v) : fmt(v);
    }
    return { root, x, y };
  }

  // A horizontal threshold line with its label on the right; labels that would overlap
  // an earlier one move up.
  function threshold(f, value, label, yDomain, dash, taken) {
    if (!(value >= yDomain[0] && value <= yDomain[1])) return;
    let ly = f.y(value) + 4;
    while (taken.some((t) => Math.abs(t - ly) < 12)) ly -= 12;
    taken.push(ly);
    const g = svg("g", { class: "threshold", "data-threshold": value, "data-label": label }, f.root);
    svg("line", {
      x1: M.left, x2: W - M.right, y1: f.y(value), y2: f.y(value), "stroke-dasharray": dash,
    }, g);
    const t = svg("text", { x: W - M.right + 4, y: ly }, g);
    t.textContent = `${label} ${fmt(value)}`;
  }

  // A marker: a circle below the threshold, a filled square (drift) or triangle (warning)
  // above it, so that the verdict does not rest on colour.
  function marker(parent, cx, cy, shape, attrs) {
    let node;
    if (shape === "square") {
      node = svg("rect", { x: cx - 5, y: cy - 5, width: 10, height: 10, ...attrs }, parent);
    } else if (shape === "triangle") {
      node = svg("polygon", {
        points: `${cx},${cy - 6} ${cx + 6},${cy + 5} ${cx - 6},${cy + 5}`, ...attrs,
      }, parent);
    } else {
      node = svg("circle", { cx, cy, r: 4, ...attrs }, parent);
    }
    return node;
  }

  // A time series of one metric with optional error bars and threshold lines.
  // points: [{t, value, err, verdict, label}], thresholds: [{value, label, dash}]
  function series(opts) {
    const pts = opts.points.filter((p) => Number.isFinite(p.value));
    const ys = [];
    for (const p of pts) { ys.push(p.value + (p.err || 0), p.value - (p.err || 0)); }
    for (const th of opts.thresholds || []) ys.push(th.value);
    ys.push(0);
    const yDomain = extent(ys);
    yDomain[0] = Math.max(0, yDomain[0]); // KS and PSI are never negative
    yDomain[1] += (yDomain[1] - yDomain[0]) * 0.08;
    const ts = pts.map((p) => p.t);
    let xDomain = extent(ts);
    if (pts.length === 1) xDomain = [ts[0] - 1, ts[0] + 1];
    const f = frame(opts.label, xDomain, yDomain, true);
    const taken = [];
    for (const th of opts.thresholds || []) threshold(f, th.value, th.label, yDomain, th.dash, taken);
    if (pts.length > 1) {
      svg("polyline", {
        class: "line", points: pts.map((p) => `${f.x(p.t)},${f.y(p.value)}`).join(" "),
      }, f.root);
    }
    const marks = svg("g", { class: "points" }, f.root);
    const limit = opts.limit;
    for (const p of pts) {
      const cx = f.x(p.t), cy = f.y(p.value);
      if (p.err) {
        svg("line", {
          class: "errorbar", x1: cx, x2: cx,
          y1: f.y(Math.max(yDomain[0], p.value - p.err)), y2: f.y(p.value + p.err),
          "data-lower": p.value - p.err, "data-upper": p.value + p.err,
        }, marks);
      }
      const above = limit !== undefined && p.value >= limit;
      const shape = p.verdict === "drift" ? "square" : (p.verdict === "warning" ? "triangle" : "circle");
      const node = marker(marks, cx, cy, shape, {
        class: `point verdict-${p.verdict || "none"}`,
        "data-metric": opts.metric, "data-value": p.value, "data-t": p.t,
        "data-error": p.err || 0, "data-verdict": p.verdict || "",
        "data-above-threshold": limit === undefined ? null : String(above),
        tabindex: "0",
      });
      title(node, p.label || `${fmtTime(p.t)}: ${fmt(p.value)}`);
    }
    return f.root;
  }

  // Lines with optional bands: [{name, dash, marker, points: [{x, y, lower, upper}]}].
  function lines(opts) {
    const xs = [], ys = [];
    for (const s of opts.series) {
      for (const p of s.points) {
        xs.push(p.x);
        for (const v of [p.y, p.lower, p.upper]) if (Number.isFinite(v)) ys.push(v);
      }
    }
    const xDomain = extent(xs), yDomain = extent(ys);
    if (opts.yMin !== undefined) yDomain[0] = Math.min(yDomain[0], opts.yMin);
    if (opts.yMax !== undefined) yDomain[1] = Math.max(yDomain[1], opts.yMax);
    const f = frame(opts.label, xDomain, yDomain, opts.xIsTime);
    opts.series.forEach((s, i) => {
      const g = svg("g", { class: `series series-${i}`, "data-series": s.name }, f.root);
      const banded = s.points.filter((p) => Number.isFinite(p.lower) && Number.isFinite(p.upper));
      if (banded.length > 1) {
        const top = banded.map((p) => `${f.x(p.x)},${f.y(p.upper)}`);
        const bottom = banded.slice().reverse().map((p) => `${f.x(p.x)},${f.y(p.lower)}`);
        svg("polygon", { class: "band", points: top.concat(bottom).join(" ") }, g);
      }
      const drawn = s.points.filter((p) => Number.isFinite(p.y));
      const path = opts.step
        ? drawn.map((p, j) => (j === 0 ? `${f.x(p.x)},${f.y(p.y)}` :
          `${f.x(p.x)},${f.y(drawn[j - 1].y)} ${f.x(p.x)},${f.y(p.y)}`)).join(" ")
        : drawn.map((p) => `${f.x(p.x)},${f.y(p.y)}`).join(" ");
      svg("polyline", { class: "line", points: path, "stroke-dasharray": s.dash }, g);
      for (const p of drawn) {
        if (!s.marker) continue;
        const node = marker(g, f.x(p.x), f.y(p.y), s.marker, {
          class: "point", "data-x": p.x, "data-y": p.y,
          "data-lower": p.lower, "data-upper": p.upper,
        });
        title(node, `${s.name}: ${fmt(p.y)}` +
          (Number.isFinite(p.lower) ? ` [${fmt(p.lower)}, ${fmt(p.upper)}]` : ""));
      }
      // Legend on the right: the series' name next to its pattern.
      const ly = M.top + 6 + i * 18;
      svg("line", { x1: W - M.right + 6, x2: W - M.right + 26, y1: ly, y2: ly, class: "line",
        "stroke-dasharray": s.dash }, g);
      const t = svg("text", { x: W - M.right + 30, y: ly + 4 }, g);
      t.textContent = s.name;
    });
    return f.root;
  }

  return { series, lines, fmt, fmtTime };
})();
