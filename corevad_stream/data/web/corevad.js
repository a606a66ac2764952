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
  const fmtScore = (s) => (s === null || s === undefined ? "–" : Number(s).toFixed(2));
  function fmtTime(t) {
    if (t === null || t === undefined) return "";
    if (STATIC) { // video seconds
      const m = Math.floor(t / 60), s = Math.floor(t % 60);
      return `${m}:${String(s).padStart(2, "0")}`;
    }
    return new Date(t * 1000).toLocaleString();
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
    events(f, before) { // keyset paging: the page after alert `before` (cheap at any depth)
      const q = new URLSearchParams({ limit: PAGE });
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
  const filter = { camera: "", state: "", since: "" };
  let detailId = null;

  // -- cameras -------------------------------------------------------------------------------------
  function pillClass(v) {
    if (["online", "ok", "normal"].includes(v)) return "pill good";
    if (["offline", "down", "anomalous", "stalled"].includes(v)) return "pill bad";
    if (["degraded", "connecting", "reconnecting", "unknown"].includes(v)) return "pill warn";
    return "pill";
  }
  function sparkline(points, opts) {
    const w = 100, h = 30;
    const box = svg("svg", { class: opts.cls, viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none",
      role: "img", "aria-label": opts.label });
    if (!points.length) return box;
    const t0 = points[0].start, t1 = Math.max(points[points.length - 1].end, t0 + 1e-9);
    const x = (t) => ((t - t0) / (t1 - t0)) * w;
    const y = (s) => h - 1 - s * (h - 2);
    for (const [s, e] of opts.spans || []) {
      box.append(svg("rect", { class: "gt", x: x(s), y: 0, width: Math.max(0.5, x(e) - x(s)), height: h }));
    }
    if (opts.threshold !== undefined && opts.threshold !== null) {
      box.append(svg("line", { class: "thr", x1: 0, x2: w, y1: y(opts.threshold), y2: y(opts.threshold) }));
    }
    if (opts.close !== undefined && opts.close !== null) {
      box.append(svg("line", { class: "thr close", x1: 0, x2: w, y1: y(opts.close), y2: y(opts.close) }));
    }
    let run = [];
    const flush = () => {
      if (run.length) box.append(svg("polyline", { points: run.join(" ") }));
      run = [];
    };
    for (const p of points) { // a segment the model did not answer is a gap, not a zero
      if (p.score === null || p.score === undefined) { flush(); continue; }
      const mid = (p.start + p.end) / 2;
      run.push(`${x(mid).toFixed(2)},${y(p.score).toFixed(2)}`);
      if (run.length === 1) run.push(`${(x(mid) + 0.01).toFixed(2)},${y(p.score).toFixed(2)}`);
    }
    flush();
    for (const m of opts.marks || []) {
      box.append(svg("line", { class: `mark ${m.kind}`, x1: x(m.t), x2: x(m.t), y1: 0, y2: h }));
    }
    return box;
  }
  function renderCamera(c) {
    const points = sparks.get(c.name) || [];
    const anomalous = c.state === "anomalous";
    const card = el("article", { class: `cam${anomalous ? " anomalous" : ""}${filter.camera === c.name ? " selected" : ""}`,
      "data-camera": c.name, title: "show this camera's alerts",
      onclick: () => setFilter({ camera: filter.camera === c.name ? "" : c.name }) },
    el("h3", {}, c.name),
    el("div", {},
      el("span", { class: pillClass(c.status), "data-role": "status" }, c.status || ""),
      c.model_state ? el("span", { class: pillClass(c.model_state), "data-role": "model" }, `model ${c.model_state}`) : null,
      el("span", { class: pillClass(c.state), "data-role": "state" }, c.state || "")),
    sparkline(points, { cls: "spark", label: `recent scores of ${c.name}`, threshold: c.open_threshold,
      spans: c.spans }),
    el("p", { class: "meta" }, STATIC ? `${c.alerts || 0} alert(s), ${points.length} s`
      : `score ${fmtScore(c.last_score)} · ${c.scored || 0} scored`),
    c.reason && c.status !== "online" ? el("p", { class: "reason" }, c.reason) : null);
    const old = camNodes.get(c.name);
    if (old) old.replaceWith(card);
    else $("grid").append(card);
    camNodes.set(c.name, card);
    document.dispatchEvent(new CustomEvent("corevad:card", { detail: { camera: c, element: card } }));
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
    for (const c of list) renderCamera(c);
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
  function stateText(a) {
    if (a.active) return "active";
    return a.end_reason ? `ended: ${a.end_reason}` : "ended";
  }
  function renderAlert(a, { prepend = false } = {}) {
    const snap = api.snapshot(a);
    const why = (a.explanation && a.explanation[0]) || "(no description)";
    const node = el("li", { class: `alert${a.active ? " active" : ""}${a.acknowledged_at ? " acked" : ""}`,
      "data-id": a.id },
    snap ? el("img", { class: "thumb", src: snap, alt: `snapshot of ${a.camera}`, loading: "lazy" }) : null,
    el("div", { class: "body" },
      el("p", { class: "head" }, el("b", {}, a.camera), " · ", el("time", {}, fmtTime(a.start_time)), " · ",
        el("span", { class: a.active ? "pill bad" : "pill" }, stateText(a)), ` peak ${fmtScore(a.peak_score)}`),
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
    const t0 = scores.length ? scores[0].start : a.start_time;
    const t1 = scores.length ? scores[scores.length - 1].end : (a.end_time || a.start_time);
    box.replaceChildren(
      el("div", { class: "actions" }, el("a", { href: "#" }, "← all alerts"),
        api.ack && !a.acknowledged_at
          ? el("button", { type: "button", class: "ack", onclick: () => acknowledge(a.id) }, "Acknowledge") : null,
        a.acknowledged_at ? el("span", { class: "pill good" }, `acknowledged ${fmtTime(a.acknowledged_at)}`) : null),
      el("h2", {}, `${a.camera} · ${fmtTime(a.start_time)}`),
      el("div", { class: "cols" },
        el("div", {}, snap ? el("img", { class: "big", src: snap, alt: `snapshot of ${a.camera}` })
          : el("p", { class: "muted" }, STATIC ? "(a replay keeps no pictures)" : "(no snapshot)")),
        el("div", {},
          el("p", {}, el("span", { class: a.active ? "pill bad" : "pill" }, stateText(a)),
            ` peak ${fmtScore(a.peak_score)}`, a.end_time ? ` · ended ${fmtTime(a.end_time)}` : ""),
          sparkline(scores, { cls: "timeline", label: "score timeline", threshold: cam.open_threshold,
            close: cam.close_threshold, marks, spans: STATIC ? cam.spans : null }),
          el("div", { class: "axis" }, el("span", {}, fmtTime(t0)), el("span", {}, fmtTime(t1))),
          el("p", { class: "legend" }, "blue: score · red dashed: open threshold · orange dashed: close threshold · " +
            "red line: opened · green line: ended" + (STATIC ? " · shaded: ground-truth anomaly" : "")),
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
    on("state", (cam, p) => { const c = cams.get(cam); if (c) { c.state = p; renderCamera(c); } });
    on("status", (cam, p) => {
      const c = cams.get(cam);
      if (c) { c.status = p.state; c.reason = p.reason; renderCamera(c); }
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
