// The participant's flow for /s/<link token>: consent -> device check -> instructions with an
// example -> practice with feedback -> main trials -> debrief -> completion code (+ redirect).
// Usage: loaded by participate.html; no login. The session token is kept in localStorage and in
// the URL hash, so a reload resumes at the next unanswered trial. Every answer is sent as soon
// as it is given (kept in localStorage until the server confirms it) and retried until stored.
// Images are drawn on canvases at 1 image pixel = 1 device pixel (CSS size = natural / dpr).

import { html, render } from "../lib/html.js";

const root = document.getElementById("study");
const linkToken = decodeURIComponent(location.pathname.replace(/^\/s\//, "").split("/")[0] || "");
const params = new URLSearchParams(location.search);
const prolific = {
  prolific_pid: params.get("PROLIFIC_PID") || null,
  study_id: params.get("STUDY_ID") || null,
  session_id: params.get("SESSION_ID") || null,
};
const STORE_KEY = `study-session:${linkToken}:${prolific.prolific_pid || ""}`;
const PENDING_KEY = (token) => `study-answer:${token}`;

let info = null;
let token = null;
let keyHandler = null;

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function call(url, { method = "GET", body } = {}) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch {
    throw new HttpError(0, "The server could not be reached. Please check your connection.");
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) throw new HttpError(res.status, (data && typeof data.detail === "string") ? data.detail : `Error ${res.status}.`);
  return data;
}

/** Retry a call until it succeeds or the server gives a definite answer (4xx). */
async function persist(url, opts, onWait) {
  let delay = 500;
  for (;;) {
    try {
      return await call(url, opts);
    } catch (err) {
      if (err.status >= 400 && err.status < 500) throw err;
      if (onWait) onWait(err);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 8000);
    }
  }
}

function setKeys(fn) {
  if (keyHandler) document.removeEventListener("keydown", keyHandler);
  keyHandler = fn;
  if (fn) document.addEventListener("keydown", fn);
}

function show(markup) { setKeys(null); render(root, markup); }

function fail(message) {
  show(html`<div class="card"><p class="error" role="alert">${message}</p></div>`);
}

function rememberToken(t) {
  token = t;
  try { localStorage.setItem(STORE_KEY, t); } catch { /* private mode: the URL hash still has it */ }
  history.replaceState(null, "", `${location.pathname}${location.search}#session=${encodeURIComponent(t)}`);
}

function storedToken() {
  const m = location.hash.match(/session=([^&]+)/);
  if (m) return decodeURIComponent(m[1]);
  try { return localStorage.getItem(STORE_KEY); } catch { return null; }
}

async function start() {
  if (!linkToken) return fail("This study link is not complete.");
  try {
    info = await call(`/api/participate/links/${encodeURIComponent(linkToken)}`);
  } catch (err) {
    return fail(err.message);
  }
  document.title = info.name;
  let state = null;
  const kept = storedToken();
  if (kept) {
    try { state = await call(`/api/participate/${encodeURIComponent(kept)}`); token = kept; } catch { state = null; }
  }
  if (!state) {
    try {
      state = await call(`/api/participate/links/${encodeURIComponent(linkToken)}/sessions`,
        { method: "POST", body: prolific });
    } catch (err) {
      return fail(err.message);
    }
    rememberToken(state.token);
  } else {
    rememberToken(token);
  }
  await resendPending();
  step(state);
}

async function refresh() {
  step(await persist(`/api/participate/${encodeURIComponent(token)}`));
}

function step(state) {
  switch (state.stage) {
    case "consent": return consent();
    case "device": return deviceCheck();
    case "practice":
      if (state.practice_done === 0 && state.practice_total > 0) return instructions(state);
      return trials(state);
    case "main":
      if (state.main_done === 0 && state.practice_total > 0) return mainIntro(state);
      if (state.main_done === 0 && state.practice_total === 0) return instructions(state);
      return trials(state);
    case "debrief": return debrief();
    case "completed": return completed(state.completion_code, state.completion_url);
    default: return fail("This session is in an unknown state.");
  }
}

function consent() {
  show(html`<div class="card consent">
    <h1>${info.name}</h1>
    <p>${info.texts.consent}</p>
    <p><button class="primary" data-act="agree">I agree to take part</button>
       <button data-act="decline">I do not agree</button></p></div>`);
  root.querySelector("[data-act=agree]").addEventListener("click", async () => {
    try { step(await persist(`/api/participate/${token}/consent`, { method: "POST" })); } catch (err) { fail(err.message); }
  });
  root.querySelector("[data-act=decline]").addEventListener("click", () => {
    show(html`<div class="card"><p>Thank you. You have not taken part; you can close this page.</p></div>`);
  });
}

function touchOnly() {
  const coarse = window.matchMedia && matchMedia("(pointer: coarse)").matches;
  const fine = window.matchMedia && matchMedia("(any-pointer: fine)").matches;
  return Boolean(coarse && !fine);
}

async function deviceCheck() {
  const body = {
    screen_width: screen.width, screen_height: screen.height,
    window_width: window.innerWidth, window_height: window.innerHeight,
    device_pixel_ratio: window.devicePixelRatio || 1, user_agent: navigator.userAgent,
    touch_only: touchOnly(),
  };
  let res;
  try {
    res = await persist(`/api/participate/${token}/device`, { method: "POST", body });
  } catch (err) {
    return fail(err.message);
  }
  if (res.ok) return refresh();
  show(html`<div class="card device">
    <h2>Your screen</h2>
    ${res.problems.map((p) => html`<p class="error">${p}</p>`)}
    <p><button class="primary" data-act="again">Check again</button></p></div>`);
  root.querySelector("[data-act=again]").addEventListener("click", deviceCheck);
}

/** Load an image URL into an HTMLImageElement (decoded, ready to draw). */
function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("An image could not be loaded."));
    img.src = url;
  });
}

/** A canvas showing `img` at its native pixels: one image pixel per device pixel. */
function nativeCanvas(img) {
  const dpr = window.devicePixelRatio || 1;
  const c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  c.style.width = `${img.naturalWidth / dpr}px`;
  c.style.height = `${img.naturalHeight / dpr}px`;
  const ctx = c.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0);
  return c;
}

function answerHelp() {
  return info.design === "2afc"
    ? html`Which image was changed? Press <kbd>F</kbd> or <kbd>←</kbd> for the left one, <kbd>J</kbd> or <kbd>→</kbd> for the right one, or click a button.`
    : html`Was this image changed? Press <kbd>Y</kbd> for yes, <kbd>N</kbd> for no, or click a button.`;
}

async function instructions(state) {
  show(html`<div class="card instructions"><h2>Instructions</h2><p>${info.texts.instructions}</p>
    <p>${answerHelp()}</p>
    <p>Here is an example, made much stronger than most you will see:</p>
    <div class="stage example"><figure data-slot="original"><figcaption>Original</figcaption></figure>
      <figure data-slot="changed"><figcaption>Changed</figcaption></figure></div>
    <p>${state.practice_total ? html`You will first do ${state.practice_total} practice trials, with feedback.` : ""}</p>
    <p><button class="primary" data-act="begin">${state.practice_total ? "Start the practice" : "Start"}</button></p></div>`);
  root.querySelector("[data-act=begin]").addEventListener("click", () => trials(state));
  try {
    const ex = await call(`/api/participate/${token}/example`);
    const [a, b] = await Promise.all([loadImage(ex.original), loadImage(ex.changed)]);
    root.querySelector("[data-slot=original]").prepend(nativeCanvas(a));
    root.querySelector("[data-slot=changed]").prepend(nativeCanvas(b));
  } catch { /* the example is a help, not a requirement */ }
}

function mainIntro(state) {
  show(html`<div class="card"><h2>Practice done</h2>
    <p>Now the ${state.main_total} main trials begin. There is no feedback from here on.</p>
    <p>${answerHelp()}</p><p><button class="primary" data-act="go">Begin</button></p></div>`);
  root.querySelector("[data-act=go]").addEventListener("click", () => trials(state));
}

async function resendPending() {
  let pending = null;
  try { pending = JSON.parse(localStorage.getItem(PENDING_KEY(token)) || "null"); } catch { pending = null; }
  if (!pending) return;
  try {
    await persist(`/api/participate/${token}/trials/${pending.trial}/answer`, { method: "POST", body: pending.body });
  } catch { /* 409/404: the server already has an answer for it, or the session is finished */ }
  try { localStorage.removeItem(PENDING_KEY(token)); } catch { /* ignore */ }
}

async function trials(state) {
  show(html`<p class="progress">Loading the images…</p>`);
  let list;
  try {
    list = (await persist(`/api/participate/${token}/trials`)).data;
  } catch (err) {
    return fail(err.message);
  }
  if (!list.length) return refresh();
  // preload every pending image before the first trial is shown
  let loaded;
  try {
    loaded = await Promise.all(list.map((t) => Promise.all(t.images.map(loadImage))));
  } catch (err) {
    return fail(err.message);
  }
  const totals = { practice: state.practice_total, main: state.main_total };
  for (let i = 0; i < list.length; i++) {
    const t = list[i];
    const result = await runTrial(t, loaded[i], totals[t.phase]);
    if (!result) return undefined;
    if (result.stage === "debrief") return debrief();
    if (t.phase === "practice" && list[i + 1] && list[i + 1].phase === "main") {
      return refresh();
    }
  }
  return refresh();
}

function runTrial(trial, images, total) {
  return new Promise((resolve) => {
    const options = info.design === "2afc" ? [["left", "Left image"], ["right", "Right image"]] : [["yes", "Yes, changed"], ["no", "No, unchanged"]];
    show(html`<p class="progress">${trial.phase === "practice" ? "Practice" : "Trial"} ${trial.number} of ${total}</p>
      <div class="stage" data-trial="${trial.id}"></div>
      <p class="question">${info.design === "2afc" ? "Which image was changed?" : "Was this image changed?"}</p>
      <div class="answers">${options.map(([v, label]) => html`<button data-answer="${v}" disabled>${label}</button>`)}</div>
      <p class="feedback" aria-live="assertive"></p>`);
    const stage = root.querySelector(".stage");
    let t0 = null;
    let shownAt = null;
    let answered = false;
    const buttons = [...root.querySelectorAll("[data-answer]")];

    async function answer(value) {
      if (answered || t0 === null) return;
      answered = true;
      const rt = performance.now() - t0;
      buttons.forEach((b) => { b.disabled = true; });
      setKeys(null);
      const body = { answer: value, rt_ms: Math.round(rt * 10) / 10, shown_at: shownAt };
      try { localStorage.setItem(PENDING_KEY(token), JSON.stringify({ trial: trial.id, body })); } catch { /* ignore */ }
      const fb = root.querySelector(".feedback");
      let res;
      try {
        res = await persist(`/api/participate/${token}/trials/${trial.id}/answer`, { method: "POST", body },
          () => { fb.textContent = "Saving your answer… (retrying)"; });
      } catch (err) {
        if (err.status === 409) { refresh(); resolve(null); return; }
        fail(err.message); resolve(null); return;
      }
      try { localStorage.removeItem(PENDING_KEY(token)); } catch { /* ignore */ }
      if (res.feedback !== null && res.feedback !== undefined) {
        fb.textContent = res.feedback ? "Correct!" : "Not quite.";
        await new Promise((r) => setTimeout(r, 900));
      } else {
        fb.textContent = "";
        stage.innerHTML = "";
        await new Promise((r) => setTimeout(r, 250));
      }
      resolve(res);
    }

    const keys = info.design === "2afc"
      ? { f: "left", arrowleft: "left", j: "right", arrowright: "right" }
      : { y: "yes", n: "no" };
    setKeys((e) => {
      const v = keys[e.key.toLowerCase()];
      if (v && !e.repeat) { e.preventDefault(); answer(v); }
    });
    buttons.forEach((b) => b.addEventListener("click", () => answer(b.dataset.answer)));
    images.forEach((img) => stage.appendChild(nativeCanvas(img)));
    // the response time starts when the images are on screen: after the next paint
    requestAnimationFrame(() => requestAnimationFrame(() => {
      t0 = performance.now();
      shownAt = new Date().toISOString();
      buttons.forEach((b) => { b.disabled = false; });
    }));
  });
}

function debrief() {
  show(html`<div class="card debrief"><h2>Thank you</h2><p>${info.texts.debrief}</p>
    <p><button class="primary" data-act="finish">Finish and get my completion code</button></p></div>`);
  root.querySelector("[data-act=finish]").addEventListener("click", async (e) => {
    e.target.disabled = true;
    try {
      const done = await persist(`/api/participate/${token}/complete`, { method: "POST" });
      completed(done.completion_code, done.completion_url);
    } catch (err) {
      if (err.status === 409) refresh(); else fail(err.message);
    }
  });
}

function completed(code, url) {
  show(html`<div class="card done"><h2>All done</h2>
    <p>Your completion code:</p><p><span class="code">${code}</span></p>
    ${url ? html`<p class="muted">Taking you back to Prolific in a moment… <a href="${url}">Continue now</a></p>` : ""}</div>`);
  if (url) setTimeout(() => { location.assign(url); }, 2500);
}

start();
