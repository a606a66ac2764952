// corevad review page: arm / disarm and snooze on each camera card (corevad_stream.arming).
// corevad.js draws the cards and says so with a `corevad:card` event ({camera, element}); this file adds the
// controls to each card. Commands are POST api/cameras/{name}/arming {"armed": bool} and .../snooze
// {"minutes": N} (0 cancels), JSON from this origin: the server's same-origin rule refuses anything else.
// The cards are redrawn on every score, so each camera keeps ONE controls element that moves into its
// newest card: a click that lands while the card is redrawn still reaches the same button.
"use strict";
(() => {
  if (document.getElementById("corevad-data")) return; // a static replay page: nothing to arm
  const POLL_MS = 10000; // schedule edges and commands from MQTT / Home Assistant show up within this
  const SNOOZE = [[15, "15 min"], [60, "1 h"]];
  const LABEL = { armed: "armed", disarmed: "disarmed", snoozed: "snoozed", off_schedule: "off schedule" };
  const latest = new Map(); // camera -> {armed, state, until, source} as the server last said
  const boxes = new Map(); // camera -> its controls element
  const cards = new Map(); // camera -> its newest card

  function el(tag, attrs, text) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function showError(msg) {
    const box = document.getElementById("error");
    if (box) { box.textContent = msg; box.hidden = !msg; }
  }
  async function post(camera, what, body) {
    const r = await fetch(`api/cameras/${encodeURIComponent(camera)}/${what}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(answer.error || `HTTP ${r.status}`);
    return answer.arming;
  }
  function until(a) {
    if (a.until === null || a.until === undefined) return "";
    const d = new Date(a.until * 1000);
    const sameDay = d.toDateString() === new Date().toDateString();
    return ` until ${sameDay ? "" : d.toLocaleDateString([], { weekday: "short" }) + " "}` +
      d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  async function command(camera, what, body) {
    const box = boxes.get(camera);
    if (box) box.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      latest.set(camera, await post(camera, what, body));
      showError("");
    } catch (err) {
      showError(`${camera}: ${what} refused: ${err.message}`);
    }
    render(camera);
  }
  function render(camera) {
    const a = latest.get(camera);
    const card = cards.get(camera);
    if (!a || !card) return;
    let box = boxes.get(camera);
    if (!box) {
      box = el("div", { class: "arming" });
      box.addEventListener("click", (e) => e.stopPropagation()); // a click on the card filters the alerts
      boxes.set(camera, box);
    }
    const state = el("span", { class: `pill arming-state ${a.state}`, "data-role": "arming",
      title: `decided by ${a.source}` }, `${LABEL[a.state] || a.state}${until(a)}`);
    // Not armed (disarmed, snoozed, off schedule): the button arms; armed: it disarms.
    const toggle = el("button", { type: "button", class: "secondary", "data-role": "arm-toggle",
      "aria-pressed": String(a.armed) }, a.armed ? "Disarm" : "Arm");
    toggle.addEventListener("click", () => command(camera, "arming", { armed: !a.armed }));
    const kids = [state, toggle];
    if (a.state === "snoozed") {
      const resume = el("button", { type: "button", class: "secondary", "data-role": "snooze-cancel" }, "End snooze");
      resume.addEventListener("click", () => command(camera, "snooze", { minutes: 0 }));
      kids.push(resume);
    } else {
      for (const [minutes, text] of SNOOZE) {
        const b = el("button", { type: "button", class: "secondary", "data-role": "snooze",
          "data-minutes": String(minutes), title: `not armed for ${text}` }, `Snooze ${text}`);
        b.addEventListener("click", () => command(camera, "snooze", { minutes }));
        kids.push(b);
      }
    }
    box.replaceChildren(...kids);
    if (box.parentNode !== card) card.append(box);
  }
  document.addEventListener("corevad:card", (e) => {
    const d = e.detail || {};
    const camera = typeof d.camera === "string" ? d.camera : d.camera && d.camera.name;
    if (!camera || !d.element) return;
    cards.set(camera, d.element);
    if (!latest.has(camera) && d.camera && d.camera.arming) latest.set(camera, d.camera.arming);
    render(camera);
  });
  async function poll() {
    try {
      const r = await fetch("api/cameras");
      if (!r.ok) return;
      for (const c of await r.json()) {
        if (c.arming) { latest.set(c.name, c.arming); render(c.name); }
      }
    } catch (err) { /* corevad.js reports a server that is away */ }
  }
  poll();
  setInterval(poll, POLL_MS);
})();
