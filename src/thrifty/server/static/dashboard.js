// thrifty dashboard: polls /v1/thrifty/stats and redraws its charts in place.
"use strict";

(function () {
  const cfg = (typeof DASHBOARD === "object" && DASHBOARD) || {refresh_s: 10, window: "24h"};
  const PALETTE = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#ea580c", "#475569"];
  const $ = (id) => document.getElementById(id);
  const charts = {};
  window.__charts = charts;

  const usd = (v) => v == null ? "-" : v === 0 ? "$0" : (Math.abs(v) >= 100 ? "$" + v.toLocaleString(undefined, {maximumFractionDigits: 0})
    : Math.abs(v) >= 1 ? "$" + v.toFixed(2) : Math.abs(v) >= 0.01 ? "$" + v.toFixed(4) : "$" + v.toPrecision(2));
  const pct = (v) => v == null ? "-" : (100 * v).toFixed(1) + "%";
  const num = (v) => v == null ? "-" : Math.round(v).toLocaleString();
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));

  function label(ts, bucket) {
    const d = new Date(ts * 1000);
    const iso = d.toISOString();
    return bucket >= 86400 ? iso.slice(0, 10) : bucket >= 3600 ? iso.slice(5, 13).replace("T", " ") + "h" : iso.slice(11, 16);
  }

  // Create the chart on first use, then only swap its data (no flicker, no leaks).
  function draw(id, type, labels, datasets, options) {
    const existing = charts[id];
    if (existing) {
      existing.data.labels = labels;
      existing.data.datasets = datasets;
      existing.update("none");
      return existing;
    }
    charts[id] = new Chart($(id), {
      type, data: {labels, datasets},
      options: Object.assign({maintainAspectRatio: false, animation: false, plugins: {legend: {display: false}}}, options || {}),
    });
    return charts[id];
  }

  const moneyAxis = (axis) => ({scales: {[axis]: {beginAtZero: true, ticks: {callback: (v) => usd(v)}}}});

  function hbar(id, rows, key) {
    const top = rows.slice(0, 8);
    draw(id, "bar", top.map((r) => r.name), [{data: top.map((r) => r[key || "cost"]), backgroundColor: PALETTE}],
         Object.assign({indexAxis: "y"}, moneyAxis("x")));
  }

  function render(d) {
    const t = d.totals;
    $("k-spend").textContent = usd(t.cost);
    $("k-spend-s").textContent = "without levers " + usd(t.counterfactual_cost);
    $("k-saved").textContent = usd(t.saved);
    $("k-saved-s").textContent = pct(t.saved_share) + " of what it would have cost";
    $("k-requests").textContent = num(t.requests);
    $("k-requests-s").textContent = `${pct(t.error_rate)} errors · ${num(t.input_tokens_per_request)} in / ${num(t.output_tokens_per_request)} out tokens per request`;
    $("k-cache").textContent = pct(d.cache.hit_rate);
    const answered = Object.entries(d.cache.answered_by).map(([k, v]) => `${k} ${num(v)}`).join(" · ");
    $("k-cache-s").textContent = answered ? "answered by " + answered : "no lever answered yet";
    const lat = d.latency_ms;
    $("k-latency").textContent = lat.p50 == null ? "-" : `${num(lat.p50)} / ${num(lat.p99)} ms`;
    $("k-latency-s").textContent = lat.p90 == null ? "" : `p90 ${num(lat.p90)} ms`;
    $("k-task").textContent = usd(d.tasks.cost_per_successful_task);
    $("k-task-s").textContent = d.tasks.tasks ? `${num(d.tasks.successful)} of ${num(d.tasks.with_outcome)} judged tasks succeeded · ${usd(d.tasks.cost_per_request)} per request`
      : `${usd(d.tasks.cost_per_request)} per request · send X-Thrifty-Task to track tasks`;

    const labels = d.series.map((p) => label(p.t, d.bucket_s));
    const dots = d.series.length < 8 ? 4 : 0;  // a line of one or two points needs visible dots
    draw("c-spend", "line", labels, [
      {label: "actual", data: d.series.map((p) => p.cost), borderColor: PALETTE[0], backgroundColor: PALETTE[0], tension: 0.2, pointRadius: dots},
      {label: "without levers", data: d.series.map((p) => p.counterfactual_cost), borderColor: PALETTE[9], backgroundColor: PALETTE[9], borderDash: [4, 4], pointRadius: dots},
    ], Object.assign({plugins: {legend: {display: true, position: "bottom"}}}, moneyAxis("y")));
    draw("c-requests", "bar", labels, [
      {label: "requests", data: d.series.map((p) => p.requests - p.errors), backgroundColor: PALETTE[0], stack: "s"},
      {label: "errors", data: d.series.map((p) => p.errors), backgroundColor: PALETTE[3], stack: "s"},
    ], {plugins: {legend: {display: true, position: "bottom"}}, scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true}}});

    const levers = Object.entries(d.savings_by_lever);
    draw("c-savings", "bar", levers.map((e) => e[0]), [{data: levers.map((e) => e[1]), backgroundColor: PALETTE[1]}],
         Object.assign({indexAxis: "y"}, moneyAxis("x")));
    draw("c-model", "doughnut", d.by_model.map((r) => r.name), [{data: d.by_model.map((r) => r.cost), backgroundColor: PALETTE}],
         {plugins: {legend: {display: true, position: "right", labels: {boxWidth: 12}}}});
    hbar("c-route", d.by_route);
    hbar("c-feature", d.by_feature);
    hbar("c-key", d.by_key);
    const cache = Object.entries(d.cache.outcomes);
    const CACHE_COLORS = {hit: PALETTE[1], miss: PALETTE[2], bypass: PALETTE[9], none: "#cbd5e1"};
    draw("c-cache", "doughnut", cache.map((e) => e[0]),
         [{data: cache.map((e) => e[1]), backgroundColor: cache.map((e, i) => CACHE_COLORS[e[0]] || PALETTE[(i + 4) % PALETTE.length])}],
         {plugins: {legend: {display: true, position: "right", labels: {boxWidth: 12}}}});
    const mix = d.routing.mix.slice(0, 8);
    draw("c-routing", "bar", mix.map((r) => r.requested === r.served ? r.served : `${r.requested} → ${r.served}`),
         [{data: mix.map((r) => r.requests), backgroundColor: mix.map((r) => r.requested === r.served ? PALETTE[0] : PALETTE[1])}],
         {indexAxis: "y", scales: {x: {beginAtZero: true}}});
    $("routing-s").textContent = `rerouted ${pct(d.routing.rerouted_rate)} · escalated ${pct(d.routing.escalation_rate)}`;
    draw("c-latency", "bar", ["p50", "p90", "p99"], [{data: [lat.p50, lat.p90, lat.p99], backgroundColor: [PALETTE[1], PALETTE[2], PALETTE[3]]}],
         {scales: {y: {beginAtZero: true}}});

    const errs = d.errors.recent;
    $("t-errors").innerHTML = "<thead><tr><th>time (UTC)</th><th>model</th><th>status</th><th>error</th></tr></thead><tbody>" +
      (errs.length ? errs.map((e) => `<tr><td>${esc(new Date(e.ts * 1000).toISOString().slice(0, 19).replace("T", " "))}</td><td>${esc(e.model)}</td><td>${e.status}</td><td>${esc(e.error)}</td></tr>`).join("")
        : '<tr><td colspan="4">no errors in this window</td></tr>') + "</tbody>";
    $("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC, every " + cfg.refresh_s + " s";
    document.body.dataset.ready = "1";
    document.body.dataset.requests = String(t.requests);
  }

  // Spend control (thrifty.spend): every budget's use, reservation and reset; hidden when there are none.
  async function budgets() {
    try {
      const r = await fetch("/v1/thrifty/budgets", {credentials: "same-origin", cache: "no-store"});
      if (!r.ok) return;
      const b = await r.json();
      const rows = b.data || [];
      $("budgets-card").hidden = rows.length === 0;
      const money = (row, v) => row.what === "budget" ? usd(v) : num(v);
      const when = (ts) => ts == null ? "-" : new Date(ts * 1000).toISOString().slice(0, 16).replace("T", " ");
      $("t-budgets").innerHTML = "<thead><tr><th>scope</th><th>limit</th><th>window</th><th>used</th><th>reserved</th><th>of limit</th><th>resets (UTC)</th></tr></thead><tbody>" +
        rows.map((row) => `<tr><td>${esc(row.key ? row.key + " (" + row.scope + ")" : row.scope)}</td><td>${money(row, row.limit)} ${esc(row.what)}</td>` +
          `<td>${esc(row.window || "in flight")}</td><td>${money(row, row.used)}</td><td>${money(row, row.reserved)}</td>` +
          `<td>${pct((row.used + row.reserved) / row.limit)}</td><td>${when(row.resets_at)}</td></tr>`).join("") + "</tbody>";
      $("budgets-s").textContent = b.degraded ? "counters not shared: " + b.degraded : "";
    } catch (e) { /* the stats error banner already says when the server is away */ }
  }

  async function refresh() {
    budgets();
    const win = $("window").value;
    try {
      const r = await fetch("/v1/thrifty/stats?since=" + encodeURIComponent(win), {credentials: "same-origin", cache: "no-store"});
      const body = await r.json();
      if (!r.ok) throw new Error((body.error && body.error.message) || r.statusText);
      $("error").hidden = true;
      render(body);
    } catch (e) {
      $("error").hidden = false;
      $("error").textContent = "could not load stats: " + e.message;
    }
  }

  $("window").value = cfg.window;
  if (!$("window").value) $("window").value = "24h";
  $("window").addEventListener("change", refresh);
  refresh();
  setInterval(refresh, Math.max(1, cfg.refresh_s) * 1000);
})();
