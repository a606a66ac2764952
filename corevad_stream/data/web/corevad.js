// corevad review page: cameras, a live alert feed and one alert's score timeline.
// Two data sources behind one interface: the monitor's HTTP API (live, with server-sent events) or a JSON
// blob inlined by `corevad-stream replay --html` (a static page of a benchmark replay, video time, GT spans).
// Every text that came from the model is set with textContent, never parsed as HTML.
"use strict";
(() => {
  const SPARK = 120; // scores in a camera's sparkline
  const PAGE = 50; // alerts per page
  const KEEP = 500; // alerts kept on a page left open: live ones push the oldest out (Older alerts pages back)
  const SVGNS = "http://www.w3.org/2000/svg";
  const dataNode = document.getElementById("corevad-data");
  const STATIC = dataNode ? JSON.parse(dataNode.textContent) : null;

  const $ = (id) => document.getElementById(id);
  function el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") n.className = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid !== null && kid !== undefined && kid !== false) n.append(kid instanceof Node ? kid : String(kid));
    }
    return n;
  }
  function svg(tag, attrs) {
    const n = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    return n;
  }
  const now = () => performance.timeOrigin + performance.now(); // ms since the epoch
  const nowS = () => now() / 1000;
  const fmtScore = (s) => (s === null || s === undefined ? "–" : Number(s).toFixed(2));
  // A threshold keeps its digits (0.999 is not "1.00"): up to 3 decimals, trailing zeros cut.
  const fmtThr = (t) => (t === null || t === undefined ? "–" : String(Number(Number(t).toFixed(3))));
  function fmtTime(t) {
    if (t === null || t === undefined) return "";
    if (STATIC) { // video seconds
      const m = Math.floor(t / 60), s = Math.floor(t % 60);
      return `${m}:${String(s).padStart(2, "0")}`;
    }
    return new Date(t * 1000).toLocaleString();
  }
  // Clock time alone today, with the date on other days (an alert open since yesterday says so).
  function fmtClock(t) {
    if (t === null || t === undefined) return "";
    if (STATIC) return fmtTime(t);
    const d = new Date(t * 1000);
    return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
  }
  function fmtHourMinute(t) { // "14:05" (the date too when it is not today)
    const d = new Date(t * 1000), hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return d.toDateString() === new Date().toDateString() ? hm : `${d.toLocaleDateString()} ${hm}`;
  }
  function fmtDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }
  // A text that grows with the clock ("for 45 s", "2 min ago"): the ticker below rewrites every such node
  // once a second from its data-from (seconds since the epoch), so no render has to remember them.
  function since(kind, from, until) {
    const n = el("span", { class: `since ${kind}`, "data-since": kind, "data-from": from,
      "data-until": until === null || until === undefined ? null : until });
    tickText(n);
    return n;
  }
  function tickText(n) {
    const from = Number(n.dataset.from);
    const until = n.dataset.until !== undefined ? Number(n.dataset.until) : (STATIC ? from : nowS());
    const d = fmtDuration(until - from);
    n.textContent = n.dataset.since === "for" ? `for ${d}` : n.dataset.since === "lasted" ? `lasted ${d}` : `${d} ago`;
  }
  // A camera or video name with break opportunities after _ - . / so a phone wraps it between its parts
  // ("Explosion020_ / x26") instead of inside a word.
  function breakable(name) {
    const parts = String(name).split(/(?<=[_\-./])/);
    return parts.flatMap((p, i) => (i < parts.length - 1 ? [p, el("wbr")] : [p]));
  }
  function showError(msg) {
    const box = $("error");
    box.textContent = msg;
    box.hidden = !msg;
  }

  // -- data sources --------------------------------------------------------------------------------
  async function getJSON(url, opts) {
    const r = await fetch(url, opts);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return r.json();
  }
  const enc = encodeURIComponent;
  const liveApi = {
    cameras: () => getJSON("api/cameras"),
    model: () => getJSON("api/model"),
    scores: (cam) => getJSON(`api/cameras/${enc(cam)}/scores`),
    events(f, before, limit) { // keyset paging: the page after alert `before` (cheap at any depth)
      const q = new URLSearchParams({ limit: limit || PAGE });
      if (before) q.set("before", before);
      if (f.camera) q.set("camera", f.camera);
      if (f.state) q.set("state", f.state);
      if (f.since) q.set("since", String(Date.now() / 1000 - Number(f.since)));
      return getJSON("api/events?" + q);
    },
    event: (id) => getJSON(`api/events/${enc(id)}`),
    // JSON only: the server refuses a state change that a cross-site form or no-cors fetch could send.
    ack: (id) => getJSON(`api/events/${enc(id)}/ack`,
      { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" }),
    snapshot: (a) => (a.snapshot || a._snap ? `api/events/${enc(a.id)}/snapshot?v=${a._snap || 0}` : null),
  };
  const staticApi = STATIC && {
    cameras: async () => STATIC.cameras,
    scores: async (cam) => curve(STATIC.cameras.find((c) => c.name === cam)),
    async events(f, before) {
      const list = STATIC.alerts.filter((a) => (!f.camera || a.camera === f.camera) &&
        (!f.state || (f.state === "active") === a.active));
      const from = before ? list.findIndex((a) => a.id === before) + 1 : 0;
      return list.slice(from, from + PAGE);
    },
    async event(id) {
      const a = STATIC.alerts.find((x) => x.id === id);
      return a ? { ...a, scores: curve(STATIC.cameras.find((c) => c.name === a.camera)) } : null;
    },
    ack: null,
    snapshot: () => null,
  };
  function curve(cam) {
    const seg = STATIC.segment_seconds || 1;
    return cam ? cam.scores.map((s, i) => ({ segment: i, start: i * seg, end: (i + 1) * seg, score: s })) : [];
  }
  const api = staticApi || liveApi;

  // -- state ---------------------------------------------------------------------------------------
  const cams = new Map(); // name -> camera record from the API
  const camNodes = new Map(); // name -> its card
  const sparks = new Map(); // name -> recent scores [{start, end, score}]
  const alerts = new Map(); // id -> alert
  const alertNodes = new Map(); // id -> <li>
  const openAlerts = new Map(); // camera -> its open alert (whatever the feed's filter shows)
  const filter = { camera: "", state: "", since: "" };
  let detailId = null;

  // -- the score chart (cards and the event view) ------------------------------------------------------
  // Scores on a logit scale: equal steps in odds, so 0.98 and an open threshold of 0.999 are a quarter of the
  // chart apart, not half a pixel (on a linear scale an alert seemed to open late). 0.01 is the bottom; the
  // top sits one logit above the higher of 0.999 and the open threshold.
  const logit = (p) => { const q = Math.min(1 - 1e-4, Math.max(1e-4, p)); return Math.log(q / (1 - q)); };
  function scoreScale(open) {
    const lo = logit(0.01);
    const hi = Math.max(logit(0.999), open === null || open === undefined ? -Infinity : logit(open)) + 1;
    return (s) => Math.min(1, Math.max(0, (logit(s) - lo) / (hi - lo)));
  }
  const GRID = [0.1, 0.5, 0.9, 0.99]; // the event view's labelled score lines
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
  function timeTicks(t0, t1, most) {
    const step = TIME_STEPS.find((d) => (t1 - t0) / d <= most) || TIME_STEPS[TIME_STEPS.length - 1];
    const ticks = [];
    for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) ticks.push(t);
    return ticks;
  }
  // Two neighbouring scores belong to one line only if no segment is missing between them: the segment
  // numbers follow each other (a dropped or lost segment leaves a hole) and no more than half a segment of
  // time passes (a reconnect). A segment the model did not answer is a gap too, never a zero.
  function runs(points) {
    const out = [];
    let run = [], prev = null;
    for (const p of points) {
      const idx = p.index ?? p.segment;
      const pidx = prev ? (prev.index ?? prev.segment) : undefined;
      const broken = prev && ((idx !== undefined && pidx !== undefined && idx !== pidx + 1) ||
        p.start - prev.end > Math.max(0.5, 0.5 * (prev.end - prev.start)));
      if (broken || p.score === null || p.score === undefined) {
        if (run.length) out.push(run);
        run = [];
      }
      if (p.score !== null && p.score !== undefined) run.push(p);
      prev = p;
    }
    if (run.length) out.push(run);
    return out;
  }
  // opts: cls, label, threshold, close, marks [{kind, t}], spans [[s, e]], t0/t1 (the time shown; default the
  // points'), ticks [{t, text}] under the chart, grid (labelled score lines).
  function chart(points, opts) {
    const w = 100, h = 30;
    const box = svg("svg", { class: opts.cls, viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none",
      role: "img", "aria-label": opts.label });
    const plot = el("div", { class: "plot" }, box); // the score labels sit on the plot, the time labels under it
    const wrap = el("div", { class: `chart ${opts.cls}-chart` }, plot);
    const t0 = opts.t0 ?? (points.length ? points[0].start : 0);
    const t1 = Math.max(opts.t1 ?? (points.length ? points[points.length - 1].end : t0), t0 + 1e-9);
    const x = (t) => ((t - t0) / (t1 - t0)) * w;
    const frac = scoreScale(opts.threshold);
    const y = (s) => h - 1 - frac(s) * (h - 2);
    const pct = (v) => `${Math.min(100, Math.max(0, v)).toFixed(2)}%`;
    for (const [s, e] of opts.spans || []) {
      box.append(svg("rect", { class: "gt", x: x(s), y: 0, width: Math.max(0.5, x(e) - x(s)), height: h }));
    }
    if (opts.threshold !== undefined && opts.threshold !== null) {
      // The band an alert opens in, then its edge: a score inside the band is unmistakably above.
      box.append(svg("rect", { class: "thr-band", x: 0, y: 0, width: w, height: Math.max(0, y(opts.threshold)) }));
      box.append(svg("line", { class: "thr", x1: 0, x2: w, y1: y(opts.threshold), y2: y(opts.threshold) }));
    }
    if (opts.close !== undefined && opts.close !== null) {
      box.append(svg("line", { class: "thr close", x1: 0, x2: w, y1: y(opts.close), y2: y(opts.close) }));
    }
    if (opts.grid) {
      for (const g of GRID) {
        box.append(svg("line", { class: "grid", x1: 0, x2: w, y1: y(g), y2: y(g) }));
        const lab = el("span", { class: "ylab" }, String(g));
        lab.style.top = pct((y(g) / h) * 100);
        plot.append(lab);
      }
    }
    for (const run of runs(points.filter((p) => p.end >= t0 && p.start <= t1))) {
      const pts = run.map((p) => `${x((p.start + p.end) / 2).toFixed(2)},${y(p.score).toFixed(2)}`);
      if (pts.length === 1) { // one score alone is a short flat stroke, still visible
        const p = run[0];
        pts.splice(0, 1, `${x(p.start).toFixed(2)},${y(p.score).toFixed(2)}`, `${x(p.end).toFixed(2)},${y(p.score).toFixed(2)}`);
      }
      box.append(svg("polyline", { points: pts.join(" ") }));
    }
    for (const m of opts.marks || []) {
      box.append(svg("line", { class: `mark ${m.kind}`, x1: x(m.t), x2: x(m.t), y1: 0, y2: h }));
    }
    if (opts.ticks && opts.ticks.length) {
      const axis = el("div", { class: "taxis" });
      for (const tk of opts.ticks) { // a mark under the plot at each tick, a label where the tick has one
        const mark = el("span", { class: "tmark" });
        mark.style.left = pct(x(tk.t));
        axis.append(mark);
      }
      for (const tk of opts.ticks.filter((k) => k.text)) {
        const lab = el("span", { class: "tlab" }, tk.text);
        const at = x(tk.t);
        lab.style.left = pct(at);
        if (at > 85) lab.classList.add("end");
        else if (at < 15) lab.classList.add("start");
        axis.append(lab);
      }
      wrap.append(axis);
    }
    return wrap;
  }

  // -- cameras -------------------------------------------------------------------------------------
  const SPARK_WINDOW_S = 120; // a live card shows the last two minutes: a camera that stopped shows an empty end
  const FRAME_EVERY_MS = 2000; // a card's picture is asked for at most this often (the server caches 1 s)
  function pillClass(v) {
    if (["online", "ok", "normal"].includes(v)) return "pill good";
    if (["offline", "down", "anomalous", "stalled"].includes(v)) return "pill bad";
    if (["degraded", "connecting", "reconnecting", "unknown", "closing"].includes(v)) return "pill warn";
    if (["disarmed", "snoozed", "off schedule"].includes(v)) return "pill off";
    return "pill";
  }
  // Why a camera is not watched, or null: the arming helper's `arming.state` ("disarmed", "snoozed",
  // "off_schedule"), or a status / state of "disarmed". A disarmed camera is never shown as "normal".
  function armingText(c) {
    const a = c.arming;
    if (a && a.state && a.state !== "armed") {
      if (a.state === "snoozed") return a.until ? `snoozed until ${fmtHourMinute(a.until)}` : "snoozed";
      if (a.state === "off_schedule") return "off schedule";
      return String(a.state);
    }
    if (c.status === "disarmed" || c.state === "disarmed") return "disarmed";
    return null;
  }
  // The state a person reads: an alert whose score fell below the close threshold is still open (the
  // hysteresis waits close_after_s) but "closing", not "anomalous at score 0.37".
  function stateText(c) {
    const off = armingText(c);
    if (off) return { text: off, cls: "pill off", kind: "disarmed" };
    if (c.state === "anomalous" && c.last_score !== null && c.last_score !== undefined &&
        c.close_threshold !== null && c.close_threshold !== undefined && c.last_score < c.close_threshold) {
      return { text: "closing", cls: pillClass("closing"), kind: "closing" };
    }
    return { text: c.state || "", cls: pillClass(c.state), kind: c.state || "" };
  }
  function sparkOpts(c, points) {
    const base = { cls: "spark", label: `recent scores of ${c.name}`, threshold: c.open_threshold, spans: c.spans };
    if (STATIC) {
      const t1 = points.length ? points[points.length - 1].end : 1;
      return { ...base, t0: 0, t1, ticks: timeTicks(0, t1, 4).map((t) => ({ t, text: fmtTime(t) })) };
    }
    const t1 = Math.max(nowS(), points.length ? points[points.length - 1].end : 0);
    const t0 = t1 - SPARK_WINDOW_S;
    return { ...base, t0, t1, ticks: [120, 90, 60, 30, 0].map((ago) => ({ t: t1 - ago,
      text: ago % 60 ? "" : ago ? `−${ago / 60} min` : "now" })) }; // a label each minute, a tick each 30 s
  }
  function alertLine(c) {
    const a = openAlerts.get(c.name);
    if (!a || armingText(c)) return null;
    return el("p", { class: "open", "data-role": "open" }, "alert open ", since("for", a.start_time),
      " · since ", el("time", { title: fmtTime(a.start_time) }, fmtClock(a.start_time)), " (",
      since("ago", a.start_time), ")");
  }
  function cardBody(c) {
    const points = sparks.get(c.name) || [];
    const st = stateText(c);
    const thr = c.open_threshold !== undefined && c.open_threshold !== null ? ` · opens at ${fmtThr(c.open_threshold)}` : "";
    return [
      el("h3", {}, breakable(c.name)),
      el("div", { class: "pills" },
        el("span", { class: pillClass(c.status), "data-role": "status" }, c.status || ""),
        c.model_state ? el("span", { class: pillClass(c.model_state), "data-role": "model" }, `model ${c.model_state}`) : null,
        el("span", { class: st.cls, "data-role": "state" }, st.text)),
      c.monitor ? el("p", { class: "monitor", "data-role": "monitor" }, `monitor: ${c.monitor}`) : null,
      alertLine(c),
      chart(points, sparkOpts(c, points)),
      el("p", { class: "meta" }, STATIC ? `${c.alerts || 0} alert(s), ${points.length} s`
        : `score ${fmtScore(c.last_score)}${thr} · ${c.scored || 0} scored`),
      c.reason && c.status !== "online" ? el("p", { class: "reason" }, c.reason) : null,
    ];
  }
  function frameBox(c) {
    const none = el("div", { class: "frame-none", "data-role": "no-frame" }, "no picture yet");
    const stale = el("div", { class: "frame-stale", "data-role": "stale-frame", hidden: true });
    const box = el("div", { class: "frame-box" }, none, stale);
    box._asked = 0;
    return box;
  }
  // The card's picture: loaded off-screen first, swapped in only when it decoded, so a camera without a new
  // frame (204) or a failed request keeps its last picture (or the placeholder) instead of a broken image.
  function refreshFrame(name, card) {
    const box = card.querySelector(".frame-box");
    if (!box || now() - box._asked < FRAME_EVERY_MS) return;
    box._asked = now();
    const probe = new Image();
    probe.className = "frame";
    probe.alt = `latest frame of ${name}`;
    probe.onload = () => {
      const old = box.querySelector("img.frame");
      if (old) old.replaceWith(probe);
      else box.prepend(probe);
      box.querySelector(".frame-none").hidden = true;
      const c = cams.get(name);
      box.querySelector(".frame-stale").hidden = !c || c.status === "online";
    };
    probe.src = `api/cameras/${enc(name)}/frame.jpg?t=${Math.floor(now())}`;
  }
  function renderCamera(c) {
    let card = camNodes.get(c.name);
    const created = !card;
    if (created) {
      card = el("article", { "data-camera": c.name, title: "show this camera's alerts",
        onclick: (e) => { // controls other scripts add to the card (arming.js) do not change the filter
          if (e.target.closest("button, input, select, a, label, form")) return;
          setFilter({ camera: filter.camera === c.name ? "" : c.name });
        } },
      STATIC ? null : frameBox(c), el("div", { class: "body" }));
    }
    const st = stateText(c);
    card.className = `cam${c.state === "anomalous" && st.kind !== "disarmed" ? " anomalous" : ""}` +
      `${st.kind === "closing" ? " closing" : ""}${st.kind === "disarmed" ? " disarmed" : ""}` +
      `${filter.camera === c.name ? " selected" : ""}`;
    card.querySelector(".body").replaceChildren(...cardBody(c).filter(Boolean));
    if (created) {
      $("grid").append(card);
      camNodes.set(c.name, card);
      document.dispatchEvent(new CustomEvent("corevad:card", { detail: { camera: c.name, element: card } }));
    }
    if (!STATIC) {
      // A picture kept from before the camera went away says so: it is not what the camera sees now.
      const stale = card.querySelector(".frame-stale");
      const shown = card.querySelector(".frame-box img.frame");
      stale.hidden = !shown || c.status === "online";
      stale.textContent = `last picture · camera ${c.status || "not online"}`;
      refreshFrame(c.name, card);
    }
  }
  function renderCameraOptions() {
    const sel = document.querySelector("#filters select[name=camera]");
    const keep = sel.value;
    sel.replaceChildren(el("option", { value: "" }, "all"),
      ...[...cams.keys()].map((n) => el("option", { value: n }, n)));
    sel.value = cams.has(keep) ? keep : "";
  }
  async function loadCameras() {
    const list = await api.cameras();
    $("grid").replaceChildren();
    camNodes.clear();
    cams.clear();
    for (const c of list) cams.set(c.name, c);
    renderCameraOptions();
    await Promise.all(list.map(async (c) => {
      try {
        sparks.set(c.name, (await api.scores(c.name)).slice(STATIC ? 0 : -SPARK));
      } catch (err) {
        sparks.set(c.name, []);
      }
    }));
    await loadOpenAlerts();
    for (const c of list) renderCamera(c);
  }
  // Each camera's open alert, whatever the feed below is filtered to (the cards say since when).
  async function loadOpenAlerts() {
    if (STATIC) return;
    openAlerts.clear();
    try {
      for (const a of await api.events({ state: "active" }, null, 1000)) {
        if (a.active && !openAlerts.has(a.camera)) openAlerts.set(a.camera, a);
      }
    } catch (err) { /* no store: the live feed still fills this in as alerts open */ }
  }
  // Fields other helpers add to a camera (arming, monitor) reach the page through /api/cameras: asked again
  // shortly after a status change, once however many changes arrive together.
  let camerasRefresh = null;
  function refreshCamerasSoon() {
    if (STATIC || camerasRefresh) return;
    camerasRefresh = setTimeout(async () => {
      camerasRefresh = null;
      try {
        for (const fresh of await api.cameras()) {
          const c = cams.get(fresh.name);
          if (c) { Object.assign(c, fresh); renderCamera(c); }
        }
      } catch (err) { /* the next status change asks again; the stream's own errors are shown */ }
    }, 300);
  }
  // Once a second: every "for 45 s" / "2 min ago" text, and the live cards' charts (their time axis ends now).
  function tick() {
    for (const n of document.querySelectorAll("[data-since]")) tickText(n);
    if (STATIC) return;
    for (const c of cams.values()) {
      const card = camNodes.get(c.name);
      const old = card && card.querySelector(".body > .chart");
      if (old) { const points = sparks.get(c.name) || []; old.replaceWith(chart(points, sparkOpts(c, points))); }
      if (card) refreshFrame(c.name, card); // also for a camera without scores (e.g. disarmed but decoding)
    }
  }

  // -- alerts --------------------------------------------------------------------------------------
  function matches(a) {
    return (!filter.camera || a.camera === filter.camera) &&
      (!filter.state || (filter.state === "active") === Boolean(a.active)) &&
      (!filter.since || STATIC || a.start_time >= Date.now() / 1000 - Number(filter.since));
  }
  async function acknowledge(id) {
    try {
      await api.ack(id);
      const a = alerts.get(id);
      if (a) {
        a.acknowledged_at = Date.now() / 1000;
        renderAlert(a);
      }
      if (detailId === id) await showDetail(id);
    } catch (err) {
      showError(`could not acknowledge: ${err.message}`);
    }
  }
  function alertStateText(a) {
    if (a.active) return "active";
    return a.end_reason ? `ended: ${a.end_reason}` : "ended";
  }
  // How long it has been open (live: "for 45 s", rewritten every second) or how long it lasted.
  function duration(a) {
    const ended = a.end_time !== null && a.end_time !== undefined;
    return since(ended ? "lasted" : "for", a.start_time, ended ? a.end_time : null);
  }
  // When it opened: the clock time (date too if not today; the full date and time on hover) and, live,
  // how long ago.
  function opened(a) {
    const at = el("time", { title: fmtTime(a.start_time) }, `opened ${fmtClock(a.start_time)}`);
    return STATIC ? [at] : [at, " (", since("ago", a.start_time), ")"];
  }
  function renderAlert(a, { prepend = false } = {}) {
    const snap = api.snapshot(a);
    const why = (a.explanation && a.explanation[0]) || "(no description)";
    const node = el("li", { class: `alert${a.active ? " active" : ""}${a.acknowledged_at ? " acked" : ""}`,
      "data-id": a.id },
    snap ? el("img", { class: "thumb", src: snap, alt: `snapshot of ${a.camera}`, loading: "lazy" }) : null,
    el("div", { class: "body" },
      el("p", { class: "head" }, el("b", {}, breakable(a.camera)), " · ", opened(a), " · ",
        el("span", { class: a.active ? "pill bad" : "pill" }, alertStateText(a)), " ", duration(a),
        ` · peak ${fmtScore(a.peak_score)}`),
      el("p", { class: "why" }, why),
      el("div", { class: "actions" },
        el("a", { href: `#event=${enc(a.id)}` }, "details"),
        api.ack && !a.acknowledged_at
          ? el("button", { type: "button", class: "ack", onclick: () => acknowledge(a.id) }, "Acknowledge")
          : null,
        a.acknowledged_at ? el("span", { class: "pill good" }, "acknowledged") : null)));
    const old = alertNodes.get(a.id);
    node.dataset.shownAt = old ? old.dataset.shownAt : String(now());
    if (old) old.replaceWith(node);
    else if (prepend) $("alerts").prepend(node);
    else $("alerts").append(node);
    alertNodes.set(a.id, node);
    while (prepend && alertNodes.size > KEEP) { // a tab open for weeks stays small
      const last = $("alerts").lastElementChild;
      alertNodes.delete(last.dataset.id);
      alerts.delete(last.dataset.id);
      last.remove();
    }
    $("empty").hidden = alertNodes.size > 0;
  }
  async function loadAlerts({ more = false } = {}) {
    if (!more) {
      alerts.clear();
      alertNodes.clear();
      $("alerts").replaceChildren();
    }
    const last = more ? $("alerts").lastElementChild : null; // the oldest alert shown: older ones follow it
    const page = await api.events(filter, last ? last.dataset.id : null);
    for (const a of page) {
      alerts.set(a.id, a);
      renderAlert(a);
    }
    $("more").hidden = page.length < PAGE;
    $("empty").hidden = alertNodes.size > 0;
  }
  function setFilter(change) {
    Object.assign(filter, change);
    const form = $("filters");
    for (const k of Object.keys(filter)) form.elements[k].value = filter[k];
    for (const c of cams.values()) renderCamera(c);
    loadAlerts().catch((err) => showError(err.message));
  }

  // -- one alert -----------------------------------------------------------------------------------
  async function showDetail(id) {
    const box = $("detail");
    detailId = id;
    if (!id) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    const a = await api.event(id);
    if (!a) {
      box.hidden = false;
      box.replaceChildren(el("p", {}, "No such alert. ", el("a", { href: "#" }, "back")));
      return;
    }
    const cam = cams.get(a.camera) || {};
    const snap = api.snapshot(a);
    const scores = a.scores || [];
    const marks = [{ kind: "open", t: a.start_time }];
    if (a.end_time !== null && a.end_time !== undefined) marks.push({ kind: "close", t: a.end_time });
    const t0 = Math.min(scores.length ? scores[0].start : a.start_time, a.start_time);
    const t1 = Math.max(scores.length ? scores[scores.length - 1].end : (a.end_time || a.start_time),
      a.end_time || a.start_time, t0 + 1);
    const ticks = timeTicks(t0, t1, 6).map((t) => ({ t, text: STATIC ? fmtTime(t) : new Date(t * 1000).toLocaleTimeString() }));
    box.replaceChildren(
      el("div", { class: "actions" }, el("a", { href: "#" }, "← all alerts"),
        api.ack && !a.acknowledged_at
          ? el("button", { type: "button", class: "ack", onclick: () => acknowledge(a.id) }, "Acknowledge") : null,
        a.acknowledged_at ? el("span", { class: "pill good" }, `acknowledged ${fmtTime(a.acknowledged_at)}`) : null),
      el("h2", {}, breakable(a.camera), " · ", opened(a)),
      el("div", { class: "cols" },
        el("div", {}, snap ? el("img", { class: "big", src: snap, alt: `snapshot of ${a.camera}` })
          : el("p", { class: "muted" }, STATIC ? "(a replay keeps no pictures)" : "(no snapshot)")),
        el("div", {},
          el("p", {}, el("span", { class: a.active ? "pill bad" : "pill" }, alertStateText(a)), " ", duration(a),
            ` · peak ${fmtScore(a.peak_score)}`, a.end_time ? ` · ended ${fmtClock(a.end_time)}` : "",
            cam.open_threshold !== undefined ? ` · opens at ${fmtThr(cam.open_threshold)}, closes below ${fmtThr(cam.close_threshold)}` : ""),
          chart(scores, { cls: "timeline", label: "score timeline", threshold: cam.open_threshold,
            close: cam.close_threshold, marks, spans: STATIC ? cam.spans : null, t0, t1, ticks, grid: true }),
          el("p", { class: "legend" }, "blue: score (stretched near 1: lines at 0.1, 0.5, 0.9, 0.99) · " +
            "red band: at or above the open threshold · orange dashed: close threshold · " +
            "red line: opened · green line: ended · a break in the line: no score there" +
            (STATIC ? " · violet: ground-truth anomaly" : "")),
          el("h3", {}, "What the model said"),
          el("ol", {}, (a.explanation || []).map((t) => el("li", {}, t))))));
    box.hidden = false;
    box.scrollIntoView({ block: "start" });
  }
  function route() {
    const m = location.hash.match(/^#event=(.+)$/);
    showDetail(m ? decodeURIComponent(m[1]) : null).catch((err) => showError(err.message));
  }

  // -- live updates (server-sent events) -----------------------------------------------------------
  function onAlertEvent(ev) {
    const after = ev.after;
    const old = alerts.get(after.id) || {};
    const a = { ...old, ...after, acknowledged_at: old.acknowledged_at || null, snapshot: old.snapshot, _snap: old._snap };
    alerts.set(a.id, a);
    if (a.active) openAlerts.set(a.camera, a);
    else if (openAlerts.has(a.camera) && openAlerts.get(a.camera).id === a.id) openAlerts.delete(a.camera);
    const c = cams.get(a.camera);
    if (c) renderCamera(c);
    if (matches(a)) {
      renderAlert(a, { prepend: !alertNodes.has(a.id) });
    }
    if (detailId === a.id) showDetail(a.id).catch(() => {});
  }
  function onSnapshot(camera, payload) {
    const a = alerts.get(payload.alert_id);
    if (!a) return;
    a._snap = (a._snap || 0) + 1;
    if (alertNodes.has(a.id)) renderAlert(a);
    if (detailId === a.id) showDetail(a.id).catch(() => {});
  }
  function onScore(camera, s) {
    const list = sparks.get(camera) || [];
    list.push(s);
    if (list.length > SPARK) list.splice(0, list.length - SPARK);
    sparks.set(camera, list);
    const c = cams.get(camera);
    if (c) {
      if (s.available !== false) c.last_score = s.score;
      c.scored = (c.scored || 0) + (s.available !== false ? 1 : 0);
      renderCamera(c);
    }
  }
  function onModel(camera, m) {
    if (!camera) {
      const pill = $("model");
      pill.hidden = false;
      pill.className = pillClass(m.state);
      pill.textContent = `model ${m.state}`;
      pill.title = m.reason || "";
      return;
    }
    const c = cams.get(camera);
    if (c) { c.model_state = m.state; renderCamera(c); }
  }
  // The disks behind the history (store) and the alert queue (outbox): said loudly while one refuses writes.
  function onStorage(m) {
    const pill = $("storage");
    const bad = [];
    if (m.store && m.store.state !== "ok") bad.push(`store failing: ${m.store.pending} write(s) waiting`);
    if (m.outbox && m.outbox.state !== "ok") bad.push(`outbox failing: ${m.outbox.unsaved} alert event(s) in memory only`);
    pill.hidden = bad.length === 0;
    pill.textContent = bad.join("; ");
    pill.title = [m.store && m.store.last_error, m.outbox && m.outbox.last_error].filter(Boolean).join("\n");
  }
  function connect() {
    const conn = $("conn");
    const es = new EventSource("api/stream");
    let wasDown = false;
    es.onopen = () => {
      conn.textContent = "live";
      conn.className = "pill good";
      if (wasDown) { // catch up on what happened while the stream was down
        loadCameras().then(() => loadAlerts()).catch((err) => showError(err.message));
        wasDown = false;
      }
    };
    es.onerror = () => {
      conn.textContent = "reconnecting";
      conn.className = "pill warn";
      wasDown = true;
    };
    const on = (kind, fn) => es.addEventListener(kind, (e) => {
      const m = JSON.parse(e.data);
      fn(m.camera, m.payload);
    });
    on("events", (_cam, p) => onAlertEvent(p));
    on("snapshot", onSnapshot);
    on("score", onScore);
    on("model", onModel);
    on("state", (cam, p) => { // rare (transitions only): ask for the fresh arming state with it
      const c = cams.get(cam);
      if (c) { c.state = p; renderCamera(c); refreshCamerasSoon(); }
    });
    on("status", (cam, p) => {
      const c = cams.get(cam);
      if (!c) return;
      c.status = p.state;
      c.reason = p.reason;
      if (p.monitor !== undefined) c.monitor = p.monitor;
      if (p.arming !== undefined) c.arming = p.arming;
      renderCamera(c);
      refreshCamerasSoon();
    });
  }

  // -- start ---------------------------------------------------------------------------------------
  async function start() {
    $("filters").addEventListener("change", (e) => setFilter({ [e.target.name]: e.target.value }));
    $("more").addEventListener("click", () => loadAlerts({ more: true }).catch((err) => showError(err.message)));
    window.addEventListener("hashchange", route);
    if (STATIC) {
      document.title = STATIC.title || "corevad replay";
      $("title").textContent = STATIC.title || "";
      $("conn").textContent = "static replay";
      $("since-label").hidden = true;
      $("cams-h").textContent = "Videos";
    }
    try {
      await loadCameras();
    } catch (err) {
      showError(`cannot load the cameras: ${err.message}`);
    }
    try {
      await loadAlerts();
    } catch (err) { // e.g. store.enabled: false: no history, but live alerts still arrive below
      showError(`no alert history (${err.message}); showing live alerts only`);
    }
    route();
    setInterval(tick, 1000);
    if (!STATIC) {
      try {
        const m = await api.model();
        onModel(null, m);
        onStorage(m);
        // Storage health has no event of its own: ask again every 10 s (one small JSON).
        setInterval(() => api.model().then(onStorage).catch((err) => showError(`cannot load the storage health: ${err.message}`)), 10000);
      } catch (err) {
        showError(`cannot load the model state: ${err.message}`);
      }
      connect();
    }
  }
  start();
})();
