// longvid Studio: editing a finished render. Per-segment thumbnails with Regenerate, Lock and
// Edit text; a version picker that plays any version; before/after of the span an edit changed
// (two <video> elements seeked to it). Every call goes through the studio's `api` (bearer
// token); videos and thumbnails use the signed links the API returns. User text goes into the
// page through textContent only.

const $ = (id) => document.getElementById(id);

let ctx = null; // {api, sameOrigin, reportFailure, onEdited}
let shownFor = null; // "runId:versions" last drawn

export function initEditor(context) {
  ctx = context;
  $("version-picker").addEventListener("change", playChosenVersion);
  $("compare-play").addEventListener("click", playChangedSpan);
}

export async function showEditor(run) {
  const panel = $("editor");
  if (run.status !== "done") {
    panel.hidden = true;
    shownFor = null;
    return;
  }
  let data;
  try {
    data = await ctx.api("GET", `/v1/renders/${encodeURIComponent(run.id)}/versions`);
  } catch (err) {
    ctx.reportFailure(err);
    return;
  }
  const key = `${run.id}:${data.versions.length}:${data.locked.join(",")}`;
  if (key === shownFor) return; // unchanged: keep the player where the user left it
  shownFor = key;
  panel.hidden = false;
  panel.dataset.run = run.id;
  drawVersions(data.versions);
  drawSegments(run.id, data.segments);
}

function drawVersions(versions) {
  const picker = $("version-picker");
  picker.replaceChildren();
  for (const v of versions) {
    const option = document.createElement("option");
    option.value = String(v.version);
    const what = v.version === 1 ? "original render" : `${v.regenerated.length} regenerated, $${Number(v.cost_usd).toFixed(2)}`;
    option.textContent = `v${v.version} · ${what}`;
    option.dataset.video = ctx.sameOrigin(v.links.video) || "";
    option.dataset.span = v.changed_span_s ? v.changed_span_s.join(",") : "";
    picker.append(option);
  }
  picker.value = String(versions[versions.length - 1].version);
  picker.versions = versions;
  playChosenVersion();
}

function chosen() {
  const picker = $("version-picker");
  return picker.options[picker.selectedIndex];
}

function playChosenVersion() {
  const option = chosen();
  const video = $("version-video");
  if (option.dataset.video && video.dataset.src !== option.dataset.video) {
    video.src = option.dataset.video;
    video.dataset.src = option.dataset.video;
    video.dataset.version = option.value;
  }
  const span = option.dataset.span ? option.dataset.span.split(",").map(Number) : null;
  const previous = $("version-picker").options[$("version-picker").selectedIndex - 1];
  const compare = $("compare");
  compare.hidden = !(span && previous);
  if (span && previous) {
    $("compare-caption").textContent =
      `v${previous.value} (before) and v${option.value} (after), ${span[0].toFixed(2)} s to ${span[1].toFixed(2)} s`;
    for (const [id, source] of [["before-video", previous], ["after-video", option]]) {
      const element = $(id);
      element.dataset.start = String(span[0]);
      element.dataset.end = String(span[1]);
      element.dataset.version = source.value;
      if (element.dataset.src !== source.dataset.video) {
        element.src = source.dataset.video;
        element.dataset.src = source.dataset.video;
        element.addEventListener("loadedmetadata", () => { element.currentTime = span[0]; }, { once: true });
      } else {
        element.currentTime = span[0];
      }
    }
  }
}

function playChangedSpan() {
  for (const id of ["before-video", "after-video"]) {
    const element = $(id);
    const start = Number(element.dataset.start);
    const end = Number(element.dataset.end);
    element.muted = true;
    element.currentTime = start;
    const stop = () => {
      if (element.currentTime >= end) {
        element.pause();
        element.removeEventListener("timeupdate", stop);
      }
    };
    element.addEventListener("timeupdate", stop);
    element.play().catch(() => {});
  }
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function drawSegments(runId, segments) {
  const list = $("edit-segments");
  list.replaceChildren();
  for (const segment of segments) {
    const item = document.createElement("li");
    item.className = "edit-segment";
    item.dataset.index = String(segment.index);
    item.dataset.locked = segment.locked ? "true" : "false";
    const image = document.createElement("img");
    image.alt = `Segment ${segment.index} (scene ${segment.scene})`;
    image.loading = "lazy";
    const src = ctx.sameOrigin(segment.thumbnail);
    if (src) image.src = src;
    const caption = document.createElement("span");
    caption.className = "hint";
    caption.textContent = `#${segment.index} · scene ${segment.scene} · ${segment.start_s.toFixed(1)} s${segment.locked ? " · locked" : ""}`;
    const regenerate = button("Regenerate", `Regenerate segment ${segment.index}`,
      () => submitEdit(runId, [{ kind: "regenerate", segment: segment.index }], regenerate));
    regenerate.disabled = segment.locked;
    const lock = button(segment.locked ? "Unlock" : "Lock", `${segment.locked ? "Unlock" : "Lock"} segment ${segment.index}`,
      () => submitEdit(runId, [{ kind: segment.locked ? "unlock" : "lock", segments: [segment.index] }], lock));
    const edit = button("Edit text", `Edit the text of scene ${segment.scene} (segment ${segment.index})`,
      () => openTextEditor(runId, segment, item));
    edit.disabled = segment.locked;
    item.append(image, caption, regenerate, lock, edit);
    list.append(item);
  }
}

function openTextEditor(runId, segment, item) {
  if (item.querySelector("textarea")) return;
  const id = `scene-text-${segment.index}`;
  const label = Object.assign(document.createElement("label"), { htmlFor: id, textContent: `Scene ${segment.scene} text` });
  const area = Object.assign(document.createElement("textarea"), { id, rows: 3 });
  area.value = segment.description;
  const apply = button("Apply", `Apply the new text of scene ${segment.scene}`,
    () => submitEdit(runId, [{ kind: "scene", scene: segment.scene, text: area.value.trim() }], apply));
  item.append(label, area, apply);
  area.focus();
}

async function submitEdit(runId, edits, control) {
  control.disabled = true;
  control.setAttribute("aria-busy", "true");
  try {
    const answer = await ctx.api("POST", `/v1/renders/${encodeURIComponent(runId)}/edits`, { edits });
    shownFor = null;
    if (answer.status === "queued") ctx.onEdited(runId); // follow the new version's render
    else await showEditor({ id: runId, status: "done" }); // a lock: redraw
  } catch (err) {
    ctx.reportFailure(err);
  } finally {
    control.disabled = false;
    control.setAttribute("aria-busy", "false");
  }
}
