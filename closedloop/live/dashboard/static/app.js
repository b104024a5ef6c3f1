// closedloop dashboard: one page for a live session (WebSocket updates) or a recording (timeline).
// Plots are drawn with plotly.js, served from the installed plotly package; nothing is loaded from the internet.
"use strict";

const D = {
  info: null,
  eeg: { t: [], v: [] },
  frames: { t: [], v: [], flags: [] },
  stim: { t: [], a: [], fire: [], dt: [], da: [] },
  events: [],
  ratings: [],
  spectrum: null,
  status: {},
  now: 0,
  messages: 0,
  renders: 0,
  drawMs: {},
  arrivals: [],
  ended: null,
  connected: false,
  lastRating: null,
  infoRetries: 0,
};
window.closedloopDashboard = D;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const TOKEN = params.get("token");

/** `path` with the page's access token added to its query string (as the server checks it), if the page has one. */
function withToken(path) {
  if (!TOKEN) return path;
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}`;
}
const PLOT_CONFIG = { displayModeBar: false, responsive: true, staticPlot: true };  // no hover/zoom layers: cheaper redraws
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"];
let dirty = { eeg: false, features: false, stim: false, spectrum: false, side: false, events: false };
let lastDraw = { eeg: 0, features: 0, stim: 0, spectrum: 0 };
let plotsReady = false;

// ---------------------------------------------------------------------------------------------- data

function trimBy(buf, keys, minT) {
  let i = 0;
  const t = buf.t;
  while (i < t.length && t[i] < minT) i++;
  if (i === 0) return;
  for (const k of keys) {
    const a = buf[k];
    if (Array.isArray(a) && a.length && Array.isArray(a[0])) a.forEach((row, j) => (a[j] = row.slice(i)));
    else if (Array.isArray(a)) buf[k] = a.slice(i);
  }
}

function appendSeries(buf, add, keys) {
  for (const k of keys) {
    const a = add[k];
    if (!a) continue;
    if (Array.isArray(buf[k]) && Array.isArray(a[0])) a.forEach((row, j) => { buf[k][j] = (buf[k][j] || []).concat(row); });
    else buf[k] = buf[k].concat(a);
  }
}

function applySnapshot(msg) {
  D.eeg = msg.eeg;
  D.frames = msg.frames;
  D.stim = msg.stim;
  D.events = msg.events || [];
  D.ratings = msg.ratings || [];
  if (msg.spectrum) D.spectrum = msg.spectrum;
  D.status = msg.status || {};
  D.now = latestTime();
  if (msg.t !== undefined) D.now = msg.t;
  markAll();
}

function applyDelta(msg) {
  appendSeries(D.eeg, msg.eeg, ["t", "v"]);
  appendSeries(D.frames, msg.frames, ["t", "v", "flags"]);
  if (msg.stim.t.length) appendSeries(D.stim, msg.stim, ["t", "a", "fire"]);
  if (msg.stim.dt.length) {
    D.stim.dt = D.stim.dt.concat(msg.stim.dt);
    D.stim.da = D.stim.da.concat(msg.stim.da);
  }
  if (msg.events.length) { D.events = D.events.concat(msg.events).slice(-200); dirty.events = true; }
  if (msg.ratings.length) D.ratings = D.ratings.concat(msg.ratings);
  if (msg.spectrum) { D.spectrum = msg.spectrum; dirty.spectrum = true; }
  D.status = msg.status || D.status;
  D.now = Math.max(D.now, latestTime());
  const span = D.info ? D.info.eeg_span_s : 5, tspan = D.info ? D.info.trace_span_s : 60;
  trimBy(D.eeg, ["t", "v"], D.now - span - 0.5);
  trimBy(D.frames, ["t", "v", "flags"], D.now - tspan);
  trimBy(D.stim, ["t", "a", "fire"], D.now - tspan);
  if (D.stim.dt.length && D.stim.dt[0] < D.now - tspan) {
    let i = 0;
    while (i < D.stim.dt.length && D.stim.dt[i] < D.now - tspan) i++;
    D.stim.dt = D.stim.dt.slice(i); D.stim.da = D.stim.da.slice(i);
  }
  dirty.eeg = dirty.eeg || msg.eeg.t.length > 0;
  dirty.features = dirty.features || msg.frames.t.length > 0;
  dirty.stim = dirty.stim || msg.stim.t.length > 0 || msg.stim.dt.length > 0 || msg.ratings.length > 0;
  dirty.side = true;
}

function latestTime() {
  let t = 0;
  for (const a of [D.eeg.t, D.frames.t, D.stim.t]) if (a && a.length) t = Math.max(t, a[a.length - 1]);
  return t;
}

function markAll() { for (const k in dirty) dirty[k] = true; }

// ------------------------------------------------------------------------------------------- drawing

function fmt(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return Number(x).toFixed(digits);
}

function flagNames(bits) {
  if (!bits) return [];
  const names = [];
  for (const [bit, name] of Object.entries(D.info.flag_names)) if (bits & Number(bit)) names.push(name);
  return names;
}

function baseLayout(extra) {
  return Object.assign({
    margin: { l: 70, r: 12, t: 6, b: 30 },
    showlegend: false,
    hovermode: false,
    paper_bgcolor: "#fff",
    plot_bgcolor: "#fff",
    font: { size: 11 },
    uirevision: "keep",
  }, extra);
}

function eegSpacing() {
  const sel = $("eeg-scale").value;
  if (sel !== "auto") return Number(sel);
  let spread = 0;
  for (const row of D.eeg.v) {
    if (!row.length) continue;
    const finite = row.filter((x) => x !== null);
    if (!finite.length) continue;
    const sorted = finite.slice().sort((a, b) => a - b);
    spread = Math.max(spread, sorted[Math.floor(0.98 * (sorted.length - 1))] - sorted[Math.floor(0.02 * (sorted.length - 1))]);
  }
  const steps = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000];
  return steps.find((s) => s >= spread) || steps[steps.length - 1];
}

function drawEEG() {
  const info = D.info, chans = info.channels, k = chans.length;
  const spacing = eegSpacing();
  const data = [];
  chans.forEach((name, i) => {
    const row = D.eeg.v[i] || [];
    let sum = 0, n = 0;
    for (const x of row) if (x !== null) { sum += x; n++; }
    const mean = n ? sum / n : 0;
    data.push({
      x: D.eeg.t, y: row.map((x) => (x === null ? null : x - mean - i * spacing)),
      type: "scatter", mode: "lines", line: { width: 1, color: COLORS[i % COLORS.length] }, name,
    });
  });
  const ft = [], fy = [], ftext = [];
  D.frames.t.forEach((t, j) => {
    const bits = D.frames.flags[j];
    if (bits && t >= D.now - info.eeg_span_s) { ft.push(t); fy.push(-(k - 0.4) * spacing); ftext.push(flagNames(bits).join(" ")); }
  });
  data.push({ x: ft, y: fy, text: ftext, type: "scatter", mode: "markers", marker: { symbol: "square", size: 7, color: "#b91c1c" }, name: "flags" });
  Plotly.react("eeg-plot", data, baseLayout({
    xaxis: { range: xRange(info.eeg_span_s), title: { text: "time (s)", standoff: 2 }, zeroline: false },
    yaxis: {
      tickvals: chans.map((_, i) => -i * spacing), ticktext: chans, range: [-(k - 0.2) * spacing - spacing * 0.6, spacing * 0.9],
      zeroline: false, showgrid: true, fixedrange: true,
    },
  }), PLOT_CONFIG);
  setText("eeg-unit", `${spacing} µV between traces`);
  $("eeg-plot").dataset.lastT = String(D.eeg.t.length ? D.eeg.t[D.eeg.t.length - 1] : "");
  $("eeg-plot").dataset.spacing = String(spacing);
}

function stride(n, most) { return Math.max(1, Math.ceil(n / most)); }

function every(a, k) { return k === 1 ? a : a.filter((_, i) => i % k === 0); }

function xRange(span) {
  // a window that fills from the left until it is full, then scrolls
  const lo = Math.max(0, D.now - span);
  return [lo, Math.max(D.now, lo + Math.min(span, 10))];
}

function featureOrder() {
  const names = D.info.features.slice();
  const c = D.info.controlled;
  if (c && names.includes(c)) { names.splice(names.indexOf(c), 1); names.unshift(c); }
  return names.slice(0, 6);
}

function drawFeatures() {
  const info = D.info, order = featureOrder(), n = order.length;
  const data = [], layout = baseLayout({ shapes: [], annotations: [], margin: { l: 70, r: 12, t: 6, b: 30 } });
  const gap = 0.04, h = (1 - gap * (n - 1)) / n;
  order.forEach((name, r) => {
    const idx = info.features.indexOf(name), ax = r === 0 ? "" : String(r + 1);
    const k = stride(D.frames.t.length, 600);
    data.push({ x: every(D.frames.t, k), y: every(D.frames.v[idx] || [], k), xaxis: "x", yaxis: "y" + ax, type: "scatter", mode: "lines",
      line: { width: 1.3, color: COLORS[r % COLORS.length] }, name });
    const top = 1 - r * (h + gap);
    const lines = name === info.controlled ? Object.assign({}, info.lines, liveLines()) : {};
    layout["yaxis" + ax] = { domain: [top - h, top], title: { text: name, font: { size: 10 } }, zeroline: false,
      range: featureRange(name, D.frames.v[idx] || [], Object.values(lines)), autorange: false, nticks: 4 };
    if (name === info.controlled) {
      for (const [key, value] of Object.entries(lines)) {
        layout.shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y" + ax, y0: value, y1: value,
          line: { dash: "dash", width: 1.2, color: key === "upper" ? "#b91c1c" : key === "lower" ? "#15803d" : "#d97706" } });
        layout.annotations.push({ xref: "paper", x: 0.995, xanchor: "right", yref: "y" + ax, y: value, yanchor: key === "lower" ? "top" : "bottom",
          text: `${key} ${value}`, showarrow: false, font: { size: 10, color: "#475569" } });
      }
    }
  });
  layout.xaxis = { range: xRange(info.trace_span_s), zeroline: false, anchor: "y" + (n > 1 ? String(n) : ""), title: { text: "time (s)", standoff: 2 } };
  Plotly.react("features-plot", data, layout, PLOT_CONFIG);
}

const ranges = {};

function featureRange(name, values, extra) {
  // a y range that holds the visible values and the thresholds, changed only when they leave it (no jitter)
  let lo = Infinity, hi = -Infinity;
  for (const x of values.concat(extra)) if (x !== null && Number.isFinite(x)) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
  if (!Number.isFinite(lo)) return [0, 1];
  const old = ranges[name];
  if (old && lo >= old[0] && hi <= old[1] && hi - lo > 0.4 * (old[1] - old[0])) return old;
  const pad = Math.max(0.1 * (hi - lo), 1e-3);
  return (ranges[name] = [lo - pad, hi + pad]);
}

function liveLines() {
  const out = {}, ctl = D.status.controller || {};
  for (const key of ["lower", "upper", "target", "threshold"]) {
    const v = ctl["baseline_" + key];
    if (typeof v === "number" && Number.isFinite(v)) out[key] = Number(v.toFixed(4));
  }
  return out;
}

function drawStim() {
  const info = D.info, data = [];
  if (!info.blinded) {
    data.push({ x: D.stim.t, y: D.stim.a, type: "scatter", mode: "lines", line: { shape: "hv", width: 2, color: "#1f77b4" }, name: "applied" });
    data.push({ x: D.stim.dt, y: D.stim.da, type: "scatter", mode: "lines", line: { shape: "hv", width: 1, dash: "dot", color: "#64748b" }, name: "controller" });
    const ft = [], fa = [];
    const tes = info.modality === "tes";
    D.stim.t.forEach((t, j) => { if (D.stim.fire[j]) { ft.push(t); fa.push(tes ? D.stim.a[j] : 1); } });
    if (ft.length) data.push({ x: ft, y: fa, type: "scatter", mode: "markers", marker: { symbol: "triangle-up", size: 9, color: "#b91c1c" }, name: "fire" });
  }
  const rt = D.ratings.filter((r) => r.t >= D.now - info.trace_span_s);
  data.push({ x: rt.map((r) => r.t), y: rt.map((r) => r.value), text: rt.map((r) => String(r.value)), yaxis: "y2",
    type: "scatter", mode: "markers+text", textposition: "top center", marker: { size: 10, color: "#d97706" }, name: "pain" });
  const amax = info.modality === "tes" ? info.limits.max_amplitude_mA || 2 : 1.1;
  Plotly.react("stim-plot", data, baseLayout({
    xaxis: { range: xRange(info.trace_span_s), title: { text: "time (s)", standoff: 2 }, zeroline: false },
    yaxis: info.blinded ? { visible: false, range: [0, 1], fixedrange: true }
      : { title: { text: info.modality === "tes" ? "mA" : "fires" }, range: [0, amax * 1.05], fixedrange: true, zeroline: false },
    yaxis2: { overlaying: "y", side: "right", range: [0, 11.8], tickvals: [0, 2, 4, 6, 8, 10], title: { text: "pain (NRS)" }, fixedrange: true, showgrid: false },
    margin: { l: 70, r: 50, t: 6, b: 30 },
    annotations: info.blinded ? [{ xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, text: "blinded: stimulation not shown", font: { color: "#6d28d9" } }] : [],
  }), PLOT_CONFIG);
}

function drawSpectrum() {
  const s = D.spectrum;
  if (!s) return;
  const shapes = [], annotations = [];
  Object.entries(D.info.bands).forEach(([name, [lo, hi]], i) => {
    shapes.push({ type: "rect", xref: "x", yref: "paper", x0: lo, x1: hi, y0: 0, y1: 1, fillcolor: COLORS[i % COLORS.length], opacity: 0.12, line: { width: 0 } });
    annotations.push({ xref: "x", yref: "paper", x: (lo + hi) / 2, y: 1, yanchor: "top", text: name, showarrow: false, font: { size: 10 } });
  });
  Plotly.react("spectrum-plot", [{ x: s.f, y: s.p, type: "scatter", mode: "lines", line: { width: 1.5, color: "#111827" } }],
    baseLayout({ shapes, annotations, margin: { l: 50, r: 8, t: 6, b: 32 },
      xaxis: { title: { text: "Hz", standoff: 2 }, range: [s.f[0], s.f[s.f.length - 1]], autorange: false },
      yaxis: { title: { text: "log10 µV²/Hz" }, zeroline: false, range: featureRange("__spectrum", s.p, []), autorange: false } }), PLOT_CONFIG);
}

function setText(id, text) { const el = $(id); if (el.textContent !== text) el.textContent = text; }

function drawSide() {
  const s = D.status, info = D.info;
  const phase = D.ended ? "ended" : (s.phase || "starting");
  const ph = $("phase");
  ph.textContent = phase;
  ph.className = "badge phase " + phase;
  setText("clock", "t = " + fmt(D.now, 1) + " s");
  if (info.mode === "live") setText("left", s.left_s !== null && s.left_s !== undefined ? `${fmt(s.left_s, 0)} s left` : "");
  const out = $("output-state");
  const state = s.output || "off";
  out.textContent = state.toUpperCase();
  out.className = "state " + state;
  setText("amplitude", info.blinded ? "blinded" : info.modality === "tes" ? `${fmt(s.amplitude_mA, 3)} mA` : (s.safety_state || ""));
  setText("safety-state", info.blinded ? "arm and amplitude hidden" : `safety: ${s.safety_state || "–"}${s.fault ? " · fault: " + s.fault : ""}`);
  const flags = flagNames(s.flags);
  const fl = $("flags");
  fl.textContent = flags.length ? flags.join(" ") : "OK";
  fl.className = "badge " + (flags.length ? "bad" : "ok");
  // gauges
  const gauges = (s.dose || []).concat(s.session_gauge ? [s.session_gauge] : []);
  $("gauges").innerHTML = gauges.map((g) => {
    const frac = g.limit > 0 ? Math.min(1, g.value / g.limit) : 0;
    const cls = frac > 0.9 ? "high" : frac > 0.7 ? "warn" : "";
    return `<div class="gauge"><div class="label"><span>${g.label}</span><span>${fmt(g.value, g.unit === "s" ? 0 : 3)} / ${fmt(g.limit, g.unit === "s" ? 0 : 3)} ${g.unit} (${fmt(100 * frac, 0)} %)</span></div>` +
      `<div class="bar"><div class="fill ${cls}" style="width:${(100 * frac).toFixed(1)}%"></div></div></div>`;
  }).join("") || '<span class="muted">–</span>';
  const wd = s.watchdog || {};
  setText("watchdog", `${wd.state || "–"}${wd.frame_age_s !== undefined && wd.frame_age_s !== null ? ` · last frame ${fmt(wd.frame_age_s * 1e3, 0)} ms ago (limit ${fmt((wd.timeout_s || 0) * 1e3, 0)} ms)` : ""}${wd.trips ? ` · trips ${wd.trips}` : ""}${wd.tripped ? ` · ${wd.tripped}` : ""}`);
  setText("latency", s.latency_ms ? `${fmt(s.latency_ms.last, 2)} ms (median ${fmt(s.latency_ms.median, 2)} ms)` : "–");
  setText("age", s.data_age_ms ? `${fmt(s.data_age_ms.last, 1)} ms (median ${fmt(s.data_age_ms.median, 1)} ms)` : "–");
  setText("frames", s.frames !== undefined ? `${s.frames}${s.behind ? ` · behind ×${s.behind}` : ""}` : "–");
  setText("display", `${D.messages} updates · ${D.renders} draws${s.dropped_ui ? ` · ${s.dropped_ui} UI frames dropped` : ""}`);
  const ctl = s.controller || {};
  $("controller").innerHTML = Object.entries(ctl).map(([k, v]) => `<tr><th>${k}</th><td>${typeof v === "number" ? fmt(v, 3) : v}</td></tr>`).join("");
  // stop state and prompt
  const live = info.mode === "live" && !D.ended && phase !== "ended";
  $("stop").disabled = !live || !D.connected || phase === "stopping" || phase === "finishing";
  $("estop").disabled = !live || !D.connected || phase === "finishing";
  $("rate").disabled = !live || !D.connected;
  if (s.stop_requested) setText("stop-note", s.stop_requested);
  else if (s.stop_reason) setText("stop-note", `stopping: ${s.stop_reason}`);
  const prompt = s.prompt;
  const pending = prompt && (!D.lastRating || D.lastRating.prompt !== prompt.id);
  $("prompt").hidden = !pending;
  $("rating-card").classList.toggle("prompted", !!pending);
}

function drawEvents() {
  const body = $("events").tBodies[0];
  const rows = D.events.filter((e) => info_mode() !== "recorded" || e.t <= D.now + 1e-6).slice(-200).reverse();
  body.innerHTML = rows.map((e) => `<tr class="ev-${esc(e.kind)}"><td>${fmt(e.t, 2)}</td><td>${esc(e.kind)}</td><td>${esc(e.reason)}</td></tr>`).join("");
}

function info_mode() { return D.info ? D.info.mode : "live"; }

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// Plots are redrawn at most 10 (EEG), 5 (features, stimulation) and 2 (spectrum) times a second, one plot per
// turn, and after a draw that took d ms nothing is drawn for d ms: drawing never takes more than half of the
// page's time, so the updates keep being read at the rate the session sends them, whatever the machine.
const PLOTS = [
  ["eeg", 90, () => drawEEG()],
  ["features", 190, () => drawFeatures()],
  ["stim", 190, () => drawStim()],
  ["spectrum", 450, () => drawSpectrum()],
];
let busyUntil = 0;

function render() {
  if (!D.info || !plotsReady) return;
  if (dirty.side) { drawSide(); dirty.side = false; }
  if (dirty.events) { drawEvents(); dirty.events = false; }
  const now = performance.now();
  if (now < busyUntil) return;
  const due = PLOTS.filter(([name, every]) => dirty[name] && now - lastDraw[name] >= every)
    .sort((a, b) => lastDraw[a[0]] - lastDraw[b[0]]);
  if (!due.length) return;
  const [name, , draw] = due[0];
  draw();
  const took = performance.now() - now;
  D.drawMs[name] = took;
  dirty[name] = false;
  lastDraw[name] = now;
  busyUntil = performance.now() + took;
  D.renders++;
}

// -------------------------------------------------------------------------------------------- set-up

function setup(info) {
  D.info = info;
  document.title = `closedloop · ${info.title}`;
  setText("title", info.title);
  setText("feature-unit", info.feature_unit);
  if (info.mode === "recorded") {
    $("timeline-bar").hidden = false;
    $("controls").hidden = true;
    $("rating-card").hidden = true;
    $("conn").textContent = "recording";
  }
  if (info.notes && info.notes.length) showBanner(info.notes.join(" · "));
  plotsReady = true;
  markAll();
}

function showBanner(text, cls) {
  const b = $("banner");
  b.textContent = text;
  b.className = "banner" + (cls ? " " + cls : "");
  b.hidden = false;
}

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (TOKEN) headers["X-Closedloop-Token"] = TOKEN;
  let r;
  try {
    r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
  } catch (e) {  // no answer at all (the session ended, the network): the caller says it did not get through
    return { ok: false, unsent: true, error: `the session did not answer (${e.message})` };
  }
  let doc = {};
  try { doc = await r.json(); } catch (e) { doc = { ok: false, error: `HTTP ${r.status}` }; }
  if (!r.ok) doc.ok = false;
  return doc;
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}${withToken("/ws")}`);
  ws.onopen = () => { D.connected = true; $("conn").textContent = "live"; dirty.side = true; };
  ws.onclose = () => {
    D.connected = false;
    $("conn").textContent = D.ended ? "session ended" : "disconnected";
    dirty.side = true;
    if (!D.ended) { showBanner("Connection to the session lost: the display is frozen (stimulation is not affected by this page)."); setTimeout(connect, 2000); }
  };
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    D.messages++;
    D.arrivals.push(performance.now());
    if (D.arrivals.length > 100) D.arrivals.shift();
    if (msg.type === "hello") { if (!D.info) setup(msg); }
    else if (msg.type === "snapshot") applySnapshot(msg);
    else if (msg.type === "delta") applyDelta(msg);
    else if (msg.type === "ended") {
      D.ended = msg;
      D.status.phase = "ended";
      showBanner(`Session ended: ${msg.reason}`, "ended");
      dirty.side = true;
    }
  };
}

// ---------------------------------------------------------------------------------------------- stop

let pendingStop = null;

function askStop(emergency) {
  const rates = D.info.rates || {};
  const rate = emergency ? rates.emergency_ramp_rate_mA_per_s : rates.max_ramp_rate_mA_per_s;
  pendingStop = emergency;
  $("confirm-title").textContent = emergency ? "Emergency stop?" : "Stop stimulation?";
  $("confirm-text").textContent = emergency
    ? `The device's emergency stop, and stimulation ramps down at the emergency rate${rate ? ` (${rate} mA/s)` : ""}. The session then ends.`
    : `Stimulation ramps down through the safety layer at the profile's rate${rate ? ` (${rate} mA/s)` : ""}. The session then ends.`;
  $("confirm-ok").className = emergency ? "estop" : "stop";
  $("who").value = localStorage.getItem("closedloop-operator") || "";
  $("confirm").showModal();
  $("who").focus();
}

async function confirmStop(ev) {
  if ($("confirm").returnValue !== "ok" || pendingStop === null) { pendingStop = null; return; }
  const who = $("who").value.trim() || "operator";
  localStorage.setItem("closedloop-operator", who);
  const emergency = pendingStop;
  pendingStop = null;
  const doc = await post("/api/stop", { emergency, who, confirm: true });
  setText("stop-note", doc.ok ? doc.message : `${doc.unsent ? "not sent" : "refused"}: ${doc.error}`);
}

// -------------------------------------------------------------------------------------------- rating

let digitBuffer = "", digitTimer = null;

function setRating(v) {
  v = Math.max(0, Math.min(10, Math.round(v)));
  $("rating").value = String(v);
  $("rating-value").textContent = String(v);
}

async function submitRating(ev) {
  if ($("rate").disabled) return;
  const entered = ev && ev.timeStamp ? ev.timeStamp : performance.now();
  const value = Number($("rating").value);
  const prompt = D.status.prompt ? D.status.prompt.id : null;
  const doc = await post("/api/rating", { value, prompt, delay_s: Math.max(0, (performance.now() - entered) / 1000) });
  if (doc.ok) {
    D.lastRating = { value, prompt, time: doc.time };
    setText("rating-note", `recorded ${value} at ${doc.stamp}${doc.prompted ? " (answering the prompt)" : ""}`);
  } else setText("rating-note", `not recorded: ${doc.error}`);
  dirty.side = true;
}

function onKey(ev) {
  if ($("confirm").open || (ev.target && ["INPUT", "SELECT", "TEXTAREA"].includes(ev.target.tagName) && ev.target.type !== "range")) return;
  if (info_mode() === "recorded") {
    if (ev.key === " ") { ev.preventDefault(); togglePlay(); }
    else if (ev.key === "ArrowRight") seek(Number($("timeline").value) + 1);
    else if (ev.key === "ArrowLeft") seek(Number($("timeline").value) - 1);
    return;
  }
  if (/^[0-9]$/.test(ev.key)) {
    digitBuffer += ev.key;
    clearTimeout(digitTimer);
    if (digitBuffer === "10") { setRating(10); digitBuffer = ""; }
    else { setRating(Number(ev.key)); if (digitBuffer !== "1") digitBuffer = ""; digitTimer = setTimeout(() => (digitBuffer = ""), 800); }
    ev.preventDefault();
  } else if (ev.key === "ArrowRight" || ev.key === "ArrowUp") { setRating(Number($("rating").value) + 1); ev.preventDefault(); }
  else if (ev.key === "ArrowLeft" || ev.key === "ArrowDown") { setRating(Number($("rating").value) - 1); ev.preventDefault(); }
  else if (ev.key === "Enter") { ev.preventDefault(); submitRating(ev); }
}

// ---------------------------------------------------------------------------------- recorded sessions

let playing = false, playTimer = null, fetching = false, wanted = null;

async function seek(t) {
  const tl = $("timeline");
  t = Math.max(Number(tl.min), Math.min(Number(tl.max), t));
  tl.value = String(t);
  setText("timeline-label", `${t.toFixed(1)} s`);
  wanted = t;
  if (fetching) return;
  fetching = true;
  try {
    while (wanted !== null) {
      const at = wanted;
      wanted = null;
      let r;
      try {
        r = await fetch(withToken(`/api/window?t=${at}`), { credentials: "same-origin" });
      } catch (e) {
        showBanner(`The viewer did not answer (${e.message}): is \`closedloop view\` still running?`);
        continue;
      }
      if (r.ok) { applySnapshot(await r.json()); D.messages++; }
    }
  } finally { fetching = false; }
}

function togglePlay() {
  playing = !playing;
  $("play").textContent = playing ? "❚❚" : "▶";
  clearInterval(playTimer);
  if (playing) {
    let last = performance.now();
    playTimer = setInterval(() => {
      const now = performance.now(), tl = $("timeline");
      const t = Number(tl.value) + ((now - last) / 1000) * Number($("speed").value);
      last = now;
      if (t >= Number(tl.max)) { togglePlay(); seek(Number(tl.max)); return; }
      seek(t);
    }, 100);
  }
}

async function startRecorded(info) {
  setup(info);
  const tl = $("timeline");
  tl.min = String(info.start_s || 0);
  tl.max = String(info.end_s || 1);
  tl.addEventListener("input", () => seek(Number(tl.value)));
  $("play").addEventListener("click", togglePlay);
  await seek(Math.min(Number(tl.max), Number(tl.min) + info.eeg_span_s));
}

// ------------------------------------------------------------------------------------------------ main

async function fetchInfo() {
  // the page can load while the server is briefly unreachable (a busy machine, a network hiccup): ask again,
  // every second, saying so, rather than leaving a blank page
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await fetch(withToken("/api/info"), { credentials: "same-origin" });
      if (attempt > 1) $("banner").hidden = true;
      return r;
    } catch (e) {
      D.infoRetries = attempt;
      showBanner(`Cannot reach the session at ${location.host} (${e.message}); trying again (${attempt})…`);
      $("conn").textContent = "unreachable";
      await new Promise((done) => setTimeout(done, 1000));
    }
  }
}

async function main() {
  $("stop").addEventListener("click", () => askStop(false));
  $("estop").addEventListener("click", () => askStop(true));
  $("confirm").addEventListener("close", confirmStop);
  $("rating").addEventListener("input", () => setRating(Number($("rating").value)));
  $("rate").addEventListener("click", submitRating);
  $("eeg-scale").addEventListener("change", () => (dirty.eeg = true));
  document.addEventListener("keydown", onKey);
  setInterval(render, 25);
  const r = await fetchInfo();
  if (!r.ok) {
    let why = `HTTP ${r.status}`;
    try { why = (await r.json()).error || why; } catch (e) { /* not JSON */ }
    showBanner(`Refused: ${why}`);
    $("conn").textContent = "refused";
    return;
  }
  const info = await r.json();
  if (info.mode === "recorded") await startRecorded(info);
  else { setup(info); connect(); }
}

main();
