// thrifty Plan page: every slider posts the workload to /v1/thrifty/plan and redraws the answer.
"use strict";

(function () {
  const cfg = (typeof PLAN === "object" && PLAN) || {api_models: [], open_models: {}, gpus: {}, catalog_as_of: ""};
  const $ = (id) => document.getElementById(id);
  const charts = {};
  window.__charts = charts;
  let measuredHourly = null;  // the ledger's hourly profile, once "Use my traffic" was pressed
  let seq = 0;
  let renders = 0;

  const usd = (v) => v == null ? "-" : "$" + (Math.abs(v) >= 100 ? Math.round(v).toLocaleString() : v.toFixed(2));
  const int = (v) => Math.round(v).toLocaleString();
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
  const log = (id) => Math.pow(10, Number($(id).value));
  const share = (id) => Number($(id).value) / 100;

  for (const m of cfg.api_models) $("api-models").insertAdjacentHTML("beforeend", `<option value="${esc(m)}">`);
  for (const [k, name] of Object.entries(cfg.open_models)) {
    $("f-open").insertAdjacentHTML("beforeend", `<option value="${esc(k)}"${k === "llama-3.3-70b" ? " selected" : ""}>${esc(name)}</option>`);
  }

  function workload() {
    const w = {
      requests_per_day: Math.round(log("s-rpd")), input_tokens: Math.round(log("s-in")),
      output_tokens: Math.round(log("s-out")), peak_to_mean: Number($("s-peak").value),
      latency_ms: Number($("s-lat").value), model: $("f-model").value.trim(),
      levers: {cache_hit_rate: share("s-cache"), routed_share: share("s-route"), route_model: $("f-route").value.trim() || null,
               compression: share("s-comp"), output_cap: share("s-cap"), batch_share: share("s-batch")},
      selfhost: {model: $("f-open").value, price: $("f-price").value},
    };
    if (measuredHourly) { w.hourly = measuredHourly; w.source = "measured from the ledger"; }
    return w;
  }

  function showInputs(w) {
    $("o-rpd").textContent = int(w.requests_per_day);
    $("o-in").textContent = int(w.input_tokens);
    $("o-out").textContent = int(w.output_tokens);
    $("o-peak").textContent = measuredHourly ? "profile" : w.peak_to_mean.toFixed(1) + "×";
    $("o-lat").textContent = w.latency_ms + " ms";
    for (const [id, v] of [["cache", w.levers.cache_hit_rate], ["route", w.levers.routed_share], ["comp", w.levers.compression],
                           ["cap", w.levers.output_cap], ["batch", w.levers.batch_share]]) $("o-" + id).textContent = Math.round(100 * v) + "%";
  }

  function draw(id, type, labels, datasets, options) {
    if (charts[id]) {
      charts[id].data.labels = labels;
      charts[id].data.datasets = datasets;
      charts[id].update("none");
      return;
    }
    charts[id] = new Chart($(id), {type, data: {labels, datasets},
      options: Object.assign({maintainAspectRatio: false, animation: false, plugins: {legend: {display: false}}}, options)});
  }

  const money = {beginAtZero: true, ticks: {callback: (v) => usd(v)}};

  function render(p) {
    const b = p.bill;
    $("k-base").textContent = usd(b.base);
    $("k-final").textContent = usd(b.final);
    $("k-saved").textContent = usd(b.saved) + (b.base ? ` (${Math.round(100 * b.saved / b.base)}%)` : "");
    const options = p.selfhost ? p.selfhost.options : [];
    const best = options[0];
    $("k-self").textContent = best ? usd(best.total) : "—";
    $("k-self-s").textContent = best ? `${best.label}, ${best.gpus_at_peak} GPU(s) at peak, ${Math.round(100 * best.utilization)}% used at the mean`
                                     : (p.selfhost_error || "");
    $("recommendation").textContent = p.recommendation;

    // waterfall: the no-lever bill, one floating bar per lever (what it took off), the final bill
    const labels = ["no lever"].concat(b.steps.map((s) => s.lever), ["after levers"]);
    let before = b.base;
    const bars = [[0, b.base]];
    for (const s of b.steps) { bars.push([s.bill_after, before]); before = s.bill_after; }
    bars.push([0, b.final]);
    const colors = labels.map((l, i) => i === 0 ? "#64748b" : i === labels.length - 1 ? "#2563eb" : "#16a34a");
    draw("c-waterfall", "bar", labels, [{data: bars, backgroundColor: colors}],
         {scales: {y: money}, plugins: {legend: {display: false}, tooltip: {callbacks: {label: (c) => {
           const [lo, hi] = c.raw; const i = c.dataIndex;
           return i === 0 || i === labels.length - 1 ? usd(hi) : "saves " + usd(hi - lo) + " → " + usd(lo); }}}}});

    const top = options.slice(0, 5);
    draw("c-compare", "bar", ["API (after levers)"].concat(top.map((o) => `${p.selfhost.model.key} ${o.label}`)),
         [{data: [b.final].concat(top.map((o) => o.total)), backgroundColor: ["#2563eb"].concat(top.map(() => "#f59e0b"))}],
         {indexAxis: "y", scales: {x: money}});

    const head = "<tr><th>option</th><th class=n>batch</th><th class=n>ms/token</th><th class=n>tok/s per replica</th><th class=n>GPUs at peak</th>" +
      "<th class=n>mean utilization</th><th class=n>interactive</th><th class=n>batch on spot</th><th class=n>per month</th>" +
      "<th class=n>$ / 1M output</th><th class=n>break-even req/day</th><th>price source</th></tr>";
    $("t-options").innerHTML = head + options.slice(0, 10).map((o) => `<tr><td>${esc(o.label)}</td><td class=n>${o.batch}</td>` +
      `<td class=n>${o.tpot_ms.toFixed(1)}</td><td class=n>${int(o.replica_tokens_per_s)}</td><td class=n>${o.gpus_at_peak}</td>` +
      `<td class=n>${Math.round(100 * o.utilization)}%</td><td class=n>${usd(o.autoscaled_cost == null ? o.interactive_cost : o.autoscaled_cost)}</td>` +
      `<td class=n>${usd(o.batch_cost)}</td><td class=n><b>${usd(o.total)}</b></td><td class=n>${o.cost_per_m_output.toFixed(2)}</td>` +
      `<td class=n>${o.breakeven_requests_per_day == null ? "never" : int(o.breakeven_requests_per_day)}</td>` +
      `<td class=s>${esc(o.price_source)}</td></tr>`).join("");
    const skipped = p.selfhost ? p.selfhost.skipped : [];
    $("skipped").textContent = p.selfhost_error ? p.selfhost_error
      : skipped.length ? "Left out: " + skipped.map((s) => `${s.gpu} ${s.precision} (${s.reason})`).join("; ") : "";
    const e = p.efficiency;
    $("assumptions").innerHTML = `Throughput: roofline with efficiency factors calibrated on published measurements ` +
      `(weights ${e.bandwidth.toFixed(2)} and KV cache ${e.kv_bandwidth.toFixed(2)} of peak bandwidth, ${e.compute.toFixed(2)} of peak FLOPs, ` +
      `${(e.allreduce_s * 1e6).toFixed(0)} µs per all-reduce). GPU catalog of ${esc(p.catalog_as_of)}. ` +
      p.assumptions.map(esc).join("; ") + ".";
    $("status").textContent = `workload: ${esc(p.workload.source)} · API prices: ${b.rates ? esc(b.rates.source) : "per request"}`;
    renders += 1;
    document.body.dataset.renders = String(renders);
    document.body.dataset.bill = b.final.toFixed(2);
    document.body.dataset.ready = "1";
  }

  async function update() {
    const w = workload();
    showInputs(w);
    const mine = ++seq;
    try {
      const r = await fetch("/v1/thrifty/plan", {method: "POST", headers: {"Content-Type": "application/json"},
                                                  credentials: "same-origin", body: JSON.stringify(w)});
      const body = await r.json();
      if (mine !== seq) return;  // a newer slider position is on its way
      if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
      $("error").hidden = true;
      render(body);
    } catch (err) {
      if (mine !== seq) return;
      $("error").textContent = "Cannot plan this workload: " + err.message;
      $("error").hidden = false;
      document.body.dataset.ready = "1";
    }
  }

  let timer = null;
  const soon = () => { clearTimeout(timer); timer = setTimeout(update, 120); };
  document.querySelectorAll("input, select").forEach((el) => el.addEventListener("input", soon));
  $("s-peak").addEventListener("input", () => { measuredHourly = null; });

  const toLog = (v, el) => { el.value = String(Math.log10(Math.max(v, Math.pow(10, Number(el.min))))); };
  $("b-traffic").addEventListener("click", async () => {
    $("traffic-s").textContent = "reading the ledger…";
    try {
      const r = await fetch("/v1/thrifty/plan/traffic", {credentials: "same-origin"});
      const body = await r.json();
      if (!r.ok) throw new Error(body.error ? body.error.message : r.statusText);
      const w = body.workload, s = body.summary;
      toLog(w.requests_per_day, $("s-rpd"));
      toLog(Math.max(w.input_tokens, 10), $("s-in"));
      toLog(w.output_tokens, $("s-out"));
      $("s-cache").value = String(Math.round(100 * w.levers.cache_hit_rate));
      $("s-route").value = String(Math.round(100 * w.levers.routed_share));
      if (w.levers.route_model) $("f-route").value = w.levers.route_model;
      if (w.model) $("f-model").value = w.model;
      measuredHourly = w.hourly || null;
      $("traffic-s").textContent = `measured: ${int(s.requests)} requests over ${s.days.toFixed(1)} days`;
      document.body.dataset.traffic = String(s.requests);
      update();
    } catch (err) {
      $("traffic-s").textContent = "could not read the ledger: " + err.message;
    }
  });

  update();
})();
