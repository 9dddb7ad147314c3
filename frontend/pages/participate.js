// The participant's flow for /s/<link token>: consent -> device check -> instructions with an
// example -> practice with feedback -> main trials -> debrief -> completion code (+ redirect).
// Usage: loaded by participate.html; no login. The session token is kept in localStorage and in
// the URL hash, so a reload resumes at the next unanswered trial. Every answer is sent as soon
// as it is given (kept in localStorage until the server confirms it) and retried until stored.
// Images smaller than the study's display target (info.display_target CSS px) are enlarged by
// an integer factor k (device pixels per image pixel), each image pixel copied into a k x k
// square on a canvas of exactly k x natural device pixels (CSS size k x natural / dpr), so
// the browser never interpolates and the perturbation's pixels stay exact; k is sent with
// every answer (display_scale).
// Preview (/s/<link>?preview=<study id>, opened by the researcher's study page): the same
// flow run from the researcher's preview route, answers kept in memory, nothing stored.

import { html, render } from "../lib/html.js";
import { labelChoices, labelHelp, labelKey, wireLabelSearch } from "../components/label-answer/label-answer.js";

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
// the researcher's preview: the study's id, or null for a participant
const previewStudy = /^[0-9]+$/.test(params.get("preview") || "") ? params.get("preview") : null;

let info = null;
let token = null;
let keyHandler = null;
let flow = null;

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

/** The participant's flow against the server: a session per link (and PROLIFIC_PID). */
function liveFlow() {
  const at = (path) => `/api/participate/${encodeURIComponent(token)}${path}`;
  return {
    preview: false,
    async begin() {
      if (!linkToken) throw new HttpError(400, "This study link is not complete.");
      info = await call(`/api/participate/links/${encodeURIComponent(linkToken)}`);
      let state = null;
      const kept = storedToken();
      if (kept) {
        try { state = await call(`/api/participate/${encodeURIComponent(kept)}`); token = kept; } catch { state = null; }
      }
      if (!state) {
        // a kept token is this browser's secret: with it the same PROLIFIC_PID resumes
        state = await call(`/api/participate/links/${encodeURIComponent(linkToken)}/sessions`,
          { method: "POST", body: { ...prolific, resume_token: kept || null } });
        rememberToken(state.token);
      } else {
        rememberToken(token);
      }
      await resendPending();
      return state;
    },
    state: () => persist(at("")),
    consent: () => persist(at("/consent"), { method: "POST" }),
    device: (body) => persist(at("/device"), { method: "POST", body }),
    example: () => call(at("/example")),
    trials: async () => (await persist(at("/trials"))).data,
    answer: (trial, body, onWait) => {
      try { localStorage.setItem(PENDING_KEY(token), JSON.stringify({ trial: trial.id, body })); } catch { /* ignore */ }
      return persist(at(`/trials/${trial.id}/answer`), { method: "POST", body }, onWait).then((res) => {
        try { localStorage.removeItem(PENDING_KEY(token)); } catch { /* ignore */ }
        return res;
      });
    },
    complete: () => persist(at("/complete"), { method: "POST" }),
  };
}

/** The researcher's preview: the same screens, from one stateless route; answers stay here. */
function previewFlow(studyId) {
  let data = null;
  let stage = "consent";
  const answers = new Map(); // trial id -> answer
  const done = (phase) => data.trials.filter((t) => t.phase === phase && answers.has(t.id)).length;
  const state = () => ({
    stage, design: info.design,
    practice_total: data.practice_total, practice_done: done("practice"),
    main_total: data.main_total, main_done: done("main"),
    completion_code: stage === "completed" ? "PREVIEW" : null, completion_url: null,
  });
  return {
    preview: true,
    async begin() {
      data = await call(`/api/studies/${studyId}/preview-session`);
      info = data.info;
      return state();
    },
    state: async () => state(),
    consent: async () => { stage = "device"; return state(); },
    device: async (body) => {
      const res = await call(`/api/studies/${studyId}/preview-device`, { method: "POST", body });
      if (res.ok) stage = data.practice_total ? "practice" : "main";
      return res;
    },
    example: async () => data.example,
    trials: async () => data.trials.filter((t) => !answers.has(t.id)),
    answer: async (trial, body) => {
      answers.set(trial.id, body.answer);
      const left = data.trials.filter((t) => !answers.has(t.id));
      stage = !left.length ? "debrief" : left.some((t) => t.phase === "practice") ? "practice" : "main";
      const own = data.trials.find((t) => t.id === trial.id);
      return {
        trial: trial.id, stored: false, stage, remaining: left.length,
        feedback: own.phase === "practice" ? body.answer === own.correct_answer : null,
      };
    },
    complete: async () => { stage = "completed"; return { completion_code: "PREVIEW", completion_url: null }; },
    completionUrl: () => data.completion_url,
  };
}

function previewBanner() {
  const p = document.createElement("p");
  p.className = "preview-banner";
  p.setAttribute("role", "status");
  p.textContent = "Preview as participant: this is what a participant sees. Nothing you do here is stored and no participant is counted.";
  document.body.prepend(p);
}

async function start() {
  flow = previewStudy ? previewFlow(previewStudy) : liveFlow();
  if (flow.preview) previewBanner();
  let state;
  try {
    state = await flow.begin();
  } catch (err) {
    return fail(err.message);
  }
  document.title = flow.preview ? `Preview: ${info.name}` : info.name;
  step(state);
}

async function refresh() {
  step(await flow.state());
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
    try { step(await flow.consent()); } catch (err) { fail(err.message); }
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
    res = await flow.device(body);
  } catch (err) {
    return fail(err.message);
  }
  if (res.ok) return refresh();
  show(html`<div class="card device">
    <h2>Your screen</h2>
    ${res.problems.map((p) => html`<p class="error">${p}</p>`)}
    <p class="muted">The images are shown enlarged (up to ${info.display_target} pixels across) so that every detail is visible; they must fit in the window.</p>
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

/** Device pixels per image pixel for a w x h image: the largest integer that keeps it within
 * info.display_target CSS pixels, at least 1 (the server's participation.display_scale). */
function displayScale(w, h) {
  const dpr = Math.min(Math.max(window.devicePixelRatio || 1, 0.25), 16); // as the server clamps it
  return Math.max(1, Math.floor((info.display_target * dpr) / Math.max(w, h, 1) + 1e-9));
}

/** A canvas showing `img` enlarged by the integer `k` (displayScale), nearest neighbour: each
 * image pixel becomes a k x k square of device pixels, copied here rather than left to the
 * browser's scaler, on a canvas exactly k x natural device pixels in size. */
function scaledCanvas(img, k) {
  const w = img.naturalWidth, h = img.naturalHeight;
  const dpr = window.devicePixelRatio || 1;
  const src = document.createElement("canvas");
  src.width = w;
  src.height = h;
  const sctx = src.getContext("2d", { willReadFrequently: true });
  sctx.drawImage(img, 0, 0);
  const from = new Uint32Array(sctx.getImageData(0, 0, w, h).data.buffer);
  const c = document.createElement("canvas");
  c.width = w * k;
  c.height = h * k;
  const out = new ImageData(w * k, h * k);
  const to = new Uint32Array(out.data.buffer);
  for (let y = 0; y < h * k; y++) {
    const row = Math.floor(y / k) * w, base = y * w * k;
    for (let x = 0; x < w * k; x++) to[base + x] = from[row + Math.floor(x / k)];
  }
  const ctx = c.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.putImageData(out, 0, 0);
  c.style.width = `${(w * k) / dpr}px`;
  c.style.height = `${(h * k) / dpr}px`;
  c.dataset.scale = String(k);
  c.dataset.src = img.src;
  return c;
}

/** The one factor for a trial's images (they share one size). */
function trialScale(images) {
  return Math.min(...images.map((img) => displayScale(img.naturalWidth, img.naturalHeight)));
}

function answerHelp() {
  if (info.design === "label") return labelHelp(info.classes || []);
  return info.design === "2afc"
    ? html`Which image was changed? Press <kbd>F</kbd> or <kbd>←</kbd> for the left one, <kbd>J</kbd> or <kbd>→</kbd> for the right one, or click a button.`
    : html`Was this image changed? Press <kbd>Y</kbd> for yes, <kbd>N</kbd> for no, or click a button.`;
}

async function instructions(state) {
  show(html`<div class="card instructions"><h2>Instructions</h2><p>${info.texts.instructions}</p>
    <p>${answerHelp()}</p>
    ${info.design === "label" ? "" : html`<p>Here is an example, made much stronger than most you will see:</p>
    <div class="stage example"><figure data-slot="original"><figcaption>Original</figcaption></figure>
      <figure data-slot="changed"><figcaption>Changed</figcaption></figure></div>`}
    <p>${state.practice_total ? html`You will first do ${state.practice_total} practice trials, with feedback.` : ""}</p>
    <p><button class="primary" data-act="begin">${state.practice_total ? "Start the practice" : "Start"}</button></p></div>`);
  root.querySelector("[data-act=begin]").addEventListener("click", () => trials(state));
  if (info.design === "label") return;  // a label study has no example pair
  try {
    const ex = await flow.example();
    const [a, b] = await Promise.all([loadImage(ex.original), loadImage(ex.changed)]);
    const k = trialScale([a, b]);
    root.querySelector("[data-slot=original]").prepend(scaledCanvas(a, k));
    root.querySelector("[data-slot=changed]").prepend(scaledCanvas(b, k));
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
    list = await flow.trials();
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
    const label = info.design === "label";
    const options = info.design === "2afc" ? [["left", "Left image"], ["right", "Right image"]] : [["yes", "Yes, changed"], ["no", "No, unchanged"]];
    const question = label ? "What does this image show?" : info.design === "2afc" ? "Which image was changed?" : "Was this image changed?";
    show(html`<p class="progress">${trial.phase === "practice" ? "Practice" : "Trial"} ${trial.number} of ${total}</p>
      <div class="stage" data-trial="${trial.id}"></div>
      <p class="question">${question}</p>
      ${label ? labelChoices(info.classes || []) : html`<div class="answers">${options.map(([v, text]) => html`<button data-answer="${v}" disabled>${text}</button>`)}</div>`}
      <p class="feedback" aria-live="assertive"></p>`);
    const stage = root.querySelector(".stage");
    let t0 = null;
    let shownAt = null;
    let answered = false;
    const buttons = [...root.querySelectorAll("[data-answer]")];
    const scale = trialScale(images);

    async function answer(value) {
      if (answered || t0 === null) return;
      answered = true;
      const rt = performance.now() - t0;
      buttons.forEach((b) => { b.disabled = true; });
      setKeys(null);
      const body = { answer: value, rt_ms: Math.round(rt * 10) / 10, shown_at: shownAt, display_scale: scale };
      const fb = root.querySelector(".feedback");
      let res;
      try {
        res = await flow.answer(trial, body, () => { fb.textContent = "Saving your answer… (retrying)"; });
      } catch (err) {
        if (err.status === 409) { refresh(); resolve(null); return; }
        fail(err.message); resolve(null); return;
      }
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
      const v = label ? labelKey(info.classes || [], root, e) : keys[e.key.toLowerCase()];
      if (v && !e.repeat) { e.preventDefault(); answer(v); }
    });
    buttons.forEach((b) => b.addEventListener("click", () => answer(b.dataset.answer)));
    images.forEach((img) => stage.appendChild(scaledCanvas(img, scale)));
    // the response time starts when the images are on screen: after the next paint
    requestAnimationFrame(() => requestAnimationFrame(() => {
      t0 = performance.now();
      shownAt = new Date().toISOString();
      buttons.forEach((b) => { b.disabled = false; });
      if (label) wireLabelSearch(root);
    }));
  });
}

function debrief() {
  show(html`<div class="card debrief"><h2>Thank you</h2><p>${info.texts.debrief}</p>
    <p><button class="primary" data-act="finish">Finish and get my completion code</button></p></div>`);
  root.querySelector("[data-act=finish]").addEventListener("click", async (e) => {
    e.target.disabled = true;
    try {
      const done = await flow.complete();
      completed(done.completion_code, done.completion_url);
    } catch (err) {
      if (err.status === 409) refresh(); else fail(err.message);
    }
  });
}

function completed(code, url) {
  if (flow.preview) {
    const next = flow.completionUrl();
    show(html`<div class="card done"><h2>All done (preview)</h2>
      <p>A participant would now see their completion code${next ? " and be sent back to Prolific" : ""}.
        Nothing of this preview was stored.</p><p><span class="code">${code}</span></p>
      ${next ? html`<p class="muted">Participants are sent to: <span class="url">${next}</span></p>` : ""}</div>`);
    return;
  }
  show(html`<div class="card done"><h2>All done</h2>
    <p>Your completion code:</p><p><span class="code">${code}</span></p>
    ${url ? html`<p class="muted">Taking you back to Prolific in a moment… <a href="${url}">Continue now</a></p>` : ""}</div>`);
  if (url) setTimeout(() => { location.assign(url); }, 2500);
}

start();
