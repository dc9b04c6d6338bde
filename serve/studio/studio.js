// longvid Studio: plan, edit, render and watch videos through the longvid HTTP API.
// Plain JS, no build step. JSON calls carry the bearer token; <video>, EventSource and the
// report link use the signed URLs the API returns in `links` (they cannot send headers).
// User text only ever goes into the page through textContent, never as HTML.

import { initEditor, showEditor } from "./studio_edit.js";

const TOKEN_KEY = "longvid.token";
const MAX_IMAGES = 4;
const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp"];
const FINISHED = new Set(["done", "failed", "cancelled"]);
const ACTIVE = new Set(["queued", "rendering", "merging"]);

// The API lives where the studio is mounted from: {base}/studio/ -> {base}/v1/...
const API_BASE = location.pathname.replace(/\/studio(\/.*)?$/, "");

const $ = (id) => document.getElementById(id);

const state = {
  plan: null, // the last /v1/plans answer
  runId: null,
  events: null, // EventSource of the watched run
  reconnects: 0,
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// -- small helpers -------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setBusy(button, busy) {
  button.disabled = busy;
  button.setAttribute("aria-busy", busy ? "true" : "false");
}

// Only same-origin links from the API are followed (never a javascript: or foreign URL).
function sameOrigin(link) {
  if (!link) return null;
  const url = new URL(link, location.href);
  return url.origin === location.origin ? url.href : null;
}

function money(usd) {
  return usd == null ? "" : `$${Number(usd).toFixed(2)}`;
}

function when(timestamp) {
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}

function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function api(method, path, body, extraHeaders = {}) {
  const headers = { Accept: "application/json", ...extraHeaders };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(API_BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, "network", `The server did not answer (${err.message}); is it running?`);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    let message = error.message || `The server answered ${response.status}.`;
    if (response.status === 401) message = `${message.replace(/[.\s]*$/, ".")} Enter a valid API token above.`;
    throw new ApiError(response.status, error.code || "http_error", message);
  }
  return data;
}

function reportFailure(err) {
  showError(err.message || String(err));
  if (err.status === 401) $("token").focus();
}

// -- the request form ----------------------------------------------------------------------

function readFileAsBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(new Error(`could not read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

function checkImages(files) {
  if (files.length > MAX_IMAGES) return `Choose at most ${MAX_IMAGES} reference images (you chose ${files.length}).`;
  for (const file of files) {
    if (!IMAGE_TYPES.includes(file.type)) return `${file.name} is not a PNG, JPEG or WebP image.`;
    if (file.size > MAX_IMAGE_BYTES) return `${file.name} is larger than 5 MB; make it smaller.`;
  }
  return "";
}

async function buildRequest() {
  const form = $("request-form");
  const prompt = form.prompt.value.trim();
  if (!prompt) throw new ApiError(0, "invalid", "Describe the video you want in the prompt.");
  const duration = Number(form.duration_s.value);
  if (!(duration >= 5 && duration <= 120)) throw new ApiError(0, "invalid", "Duration must be between 5 and 120 seconds.");
  const request = {
    prompt,
    duration_s: duration,
    aspect_ratio: form.aspect_ratio.value,
    resolution: form.resolution.value,
    provider: form.provider.value.trim() || "preview",
    quality: form.quality.value,
    continuity: form.continuity.value,
  };
  if (form.budget_usd.value !== "") request.budget_usd = Number(form.budget_usd.value);
  if (form.seed.value !== "") request.seed = Number(form.seed.value);
  const files = Array.from(form.images.files);
  const problem = checkImages(files);
  if (problem) throw new ApiError(0, "invalid", problem);
  if (files.length) {
    request.reference_images = await Promise.all(files.map(async (f) => ({ data_base64: await readFileAsBase64(f) })));
  }
  return request;
}

function listImages() {
  const list = $("image-list");
  list.replaceChildren();
  const files = Array.from($("images").files);
  for (const file of files) {
    const item = document.createElement("li");
    item.textContent = `${file.name} (${Math.ceil(file.size / 1024)} KB)`;
    list.append(item);
  }
  showError(checkImages(files));
}

// -- planning and editing ------------------------------------------------------------------

// The storyboard's scene text field (the API's Storyboard uses `description`).
function sceneTextKey(scene) {
  return "description" in scene ? "description" : "text";
}

function renderPlan(plan) {
  const board = plan.storyboard;
  $("plan").hidden = false;
  $("plan-stale").hidden = true;
  $("plan-warnings").replaceChildren(
    ...(plan.warnings || []).map((w) => Object.assign(document.createElement("li"), { textContent: w })),
  );
  const segments = plan.segments ? plan.segments.length : 0;
  $("plan-summary").textContent =
    `${board.title || "Untitled"} · ${board.scenes.length} scenes · ${segments} segments · ` +
    `provider ${plan.provider || "preview"} · estimated ${money(plan.estimated_cost_usd || 0)}`;
  const list = $("scenes");
  list.replaceChildren();
  board.scenes.forEach((scene, i) => {
    const item = document.createElement("li");
    const id = `scene-text-${i}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = `Scene ${i + 1}`;
    const details = document.createElement("span");
    details.className = "hint";
    const bits = [];
    if (scene.duration_s) bits.push(`${Number(scene.duration_s).toFixed(1)} s`);
    if (scene.camera_movement) bits.push(`camera ${scene.camera_movement}`);
    if (scene.lighting) bits.push(scene.lighting);
    if (scene.transition) bits.push(`then ${scene.transition}`);
    details.textContent = bits.join(" · ");
    const text = document.createElement("textarea");
    text.id = id;
    text.rows = 2;
    text.maxLength = 2000;
    text.value = scene[sceneTextKey(scene)] || "";
    // What the voice-over says in this scene (empty: silent); the API's Scene.narration.
    const spokenId = `scene-narration-${i}`;
    const spokenLabel = document.createElement("label");
    spokenLabel.htmlFor = spokenId;
    spokenLabel.className = "hint";
    spokenLabel.textContent = `Narration, scene ${i + 1}`;
    const spoken = document.createElement("textarea");
    spoken.id = spokenId;
    spoken.rows = 2;
    spoken.maxLength = 2000;
    spoken.value = scene.narration || "";
    item.append(label, " ", details, text, spokenLabel, spoken);
    list.append(item);
  });
  $("plan-title").focus();
}

function editedStoryboard() {
  const board = structuredClone(state.plan.storyboard);
  board.scenes.forEach((scene, i) => {
    const text = $(`scene-text-${i}`).value.trim();
    if (!text) throw new ApiError(0, "invalid", `Scene ${i + 1} is empty; describe it or plan again.`);
    scene[sceneTextKey(scene)] = text;
    const spoken = $(`scene-narration-${i}`);
    if (spoken) scene.narration = spoken.value.trim();
  });
  return board;
}

async function plan() {
  showError("");
  const button = $("plan-button");
  setBusy(button, true);
  try {
    const request = await buildRequest();
    state.plan = await api("POST", "/v1/plans", request);
    renderPlan(state.plan);
  } catch (err) {
    reportFailure(err);
  } finally {
    setBusy(button, false);
  }
}

async function submitRender(withStoryboard) {
  showError("");
  const button = withStoryboard ? $("render-plan-button") : $("render-button");
  setBusy(button, true);
  try {
    const request = await buildRequest();
    if (withStoryboard) request.storyboard = editedStoryboard();
    const created = await api("POST", "/v1/renders", request, { "Idempotency-Key": newIdempotencyKey() });
    watch(created.id, true);
    loadRuns();
  } catch (err) {
    reportFailure(err);
  } finally {
    setBusy(button, false);
  }
}

// -- watching a render ---------------------------------------------------------------------

function stopWatching() {
  if (state.events) state.events.close();
  state.events = null;
}

function showRun(run) {
  $("run").hidden = false;
  $("run-title").textContent = `Render ${run.id}`;
  $("run-prompt").textContent = run.prompt || "";
  const status = $("run-status");
  status.textContent = run.status;
  status.dataset.status = run.status;
  const progress = run.progress || { done: 0, total: 0, percent: 0 };
  const percent = Math.round(Number(progress.percent) || 0);
  $("run-progress").value = percent;
  $("run-percent").textContent = `${percent}%`;
  $("run-facts").textContent = ` · ${progress.done} of ${progress.total} segments · ${money(run.cost_usd || 0)}`;
  const error = $("run-error");
  error.textContent = run.error ? `Error: ${run.error}` : "";
  error.hidden = !run.error;

  const warnings = $("run-warnings");
  warnings.replaceChildren(...(run.warnings || []).map((w) => Object.assign(document.createElement("li"), { textContent: w })));

  const rows = $("segments");
  rows.replaceChildren();
  for (const segment of run.segments || []) {
    const row = document.createElement("tr");
    row.dataset.state = segment.state;
    const regenerated = segment.regenerations ? ` (${segment.regenerations} regenerated)` : "";
    const cells = [
      String(segment.index),
      Number.isInteger(segment.scene) ? String(segment.scene + 1) : "", // 1-based, as in the storyboard
      segment.state + (segment.error ? `: ${segment.error}` : ""),
      segment.provider || "",
      money(segment.cost_usd),
      `${segment.attempts ?? 0}${regenerated}`,
    ];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    rows.append(row);
  }

  $("cancel-button").hidden = !ACTIVE.has(run.status);
  $("resume-button").hidden = !(run.status === "failed" || run.status === "cancelled");
  const links = run.links || {};
  const done = run.status === "done";
  const report = sameOrigin(links.report);
  const sheet = sameOrigin(links.contact_sheet);
  $("report-link").hidden = !(done && report);
  if (done && report) $("report-link").href = report;
  $("sheet-link").hidden = !(done && sheet);
  if (done && sheet) $("sheet-link").href = sheet;
  if (done || !$("editor").hidden) showEditor(run); // versions and segment edits (studio_edit.js)
  const video = $("video");
  const videoUrl = sameOrigin(links.video);
  if (done && videoUrl) {
    if (video.dataset.run !== run.id || video.dataset.made !== String(run.created_at)) { // an edit made a new version: reload
      video.src = `${videoUrl}&made=${encodeURIComponent(run.created_at)}`; // a new URL per version: no stale cache
      video.dataset.run = run.id;
      video.dataset.made = String(run.created_at);
    }
    video.hidden = false;
  } else {
    video.hidden = true;
    if (video.dataset.run) {
      video.removeAttribute("src");
      delete video.dataset.run;
      video.load();
    }
  }
}

// `expectActive`: the run was just submitted or resumed, so listen even if the status read a
// moment ago still says it is finished (the stream sends the truth, then `end`).
function listen(run, expectActive = false) {
  stopWatching();
  const url = sameOrigin(run.links && run.links.events);
  if (!url || (FINISHED.has(run.status) && !expectActive)) return;
  const events = new EventSource(url);
  state.events = events;
  events.addEventListener("status", (event) => {
    state.reconnects = 0;
    let update;
    try {
      update = JSON.parse(event.data);
    } catch {
      return; // a damaged event: the next one carries the whole state again
    }
    if (update.id === state.runId) showRun(update);
  });
  events.addEventListener("end", () => {
    stopWatching();
    refresh(run.id); // fresh links for the finished run (video, report)
    loadRuns();
  });
  events.onerror = () => {
    // EventSource retries by itself while CONNECTING; CLOSED means the server refused the
    // stream (e.g. the signed link expired): fetch fresh links and listen again.
    if (events.readyState !== EventSource.CLOSED || state.events !== events) return;
    if (state.reconnects < 5) {
      state.reconnects += 1;
      setTimeout(() => refresh(run.id, true), 1000 * state.reconnects);
    } else {
      showError("Live progress was lost. The render goes on on the server: reopen it from Past renders to follow it.");
    }
  };
}

async function refresh(id, relisten = false) {
  try {
    const run = await api("GET", `/v1/renders/${encodeURIComponent(id)}`);
    if (id !== state.runId) return;
    showRun(run);
    if (relisten) listen(run);
  } catch (err) {
    reportFailure(err);
  }
}

async function watch(id, expectActive = false) {
  stopWatching();
  state.runId = id;
  state.reconnects = 0;
  try {
    const run = await api("GET", `/v1/renders/${encodeURIComponent(id)}`);
    if (id !== state.runId) return;
    showRun(run);
    $("run-title").focus();
    listen(run, expectActive);
  } catch (err) {
    reportFailure(err);
  }
}

async function cancelRun() {
  const button = $("cancel-button");
  setBusy(button, true);
  try {
    await api("DELETE", `/v1/renders/${encodeURIComponent(state.runId)}`);
    await refresh(state.runId);
  } catch (err) {
    reportFailure(err);
  } finally {
    setBusy(button, false);
  }
}

async function resumeRun() {
  const button = $("resume-button");
  setBusy(button, true);
  try {
    await api("POST", `/v1/renders/${encodeURIComponent(state.runId)}/resume`);
    await watch(state.runId, true);
  } catch (err) {
    reportFailure(err);
  } finally {
    setBusy(button, false);
  }
}

// -- past renders --------------------------------------------------------------------------

async function loadRuns() {
  try {
    const data = await api("GET", "/v1/renders");
    const list = $("runs");
    list.replaceChildren();
    for (const run of data.renders || []) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "run-entry";
      button.dataset.id = run.id;
      const title = document.createElement("strong");
      title.textContent = run.prompt || run.id;
      const facts = document.createElement("span");
      facts.className = "hint";
      const percent = run.progress ? ` · ${Math.round(run.progress.percent)}%` : "";
      facts.textContent = `${run.status}${percent} · ${run.duration_s ?? "?"} s · ${money(run.cost_usd || 0)} · ${when(run.created_at)}`;
      button.append(title, facts);
      button.setAttribute("aria-label", `Open render ${run.id}: ${run.prompt || ""} (${run.status})`);
      button.addEventListener("click", () => watch(run.id));
      item.append(button);
      list.append(item);
    }
    if (!list.children.length) list.append(Object.assign(document.createElement("li"), { textContent: "No renders yet." }));
  } catch (err) {
    if (err.status === 401 && !token()) {
      // Not an error yet: the page was just opened and no token was given.
      $("runs").replaceChildren(Object.assign(document.createElement("li"), { textContent: "Enter your API token to see renders." }));
      return;
    }
    reportFailure(err);
  }
}

// -- wiring --------------------------------------------------------------------------------

function showTokenState() {
  $("token-state").textContent = token() ? "token saved for this tab" : "no token";
}

function init() {
  $("token").value = token();
  showTokenState();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    showTokenState();
    showError("");
    loadRuns();
  });
  $("request-form").addEventListener("submit", (event) => event.preventDefault());
  $("request-form").addEventListener("input", () => {
    if (state.plan) $("plan-stale").hidden = false; // the storyboard was planned for other options
  });
  $("images").addEventListener("change", listImages);
  $("plan-button").addEventListener("click", plan);
  $("render-button").addEventListener("click", () => submitRender(false));
  $("render-plan-button").addEventListener("click", () => submitRender(true));
  $("cancel-button").addEventListener("click", cancelRun);
  $("resume-button").addEventListener("click", resumeRun);
  $("refresh-runs").addEventListener("click", loadRuns);
  initEditor({ api, sameOrigin, reportFailure, onEdited: (id) => watch(id, true) });
  if (token()) loadRuns();
  else $("runs").replaceChildren(Object.assign(document.createElement("li"), { textContent: "Enter your API token to see renders." }));
}

init();
