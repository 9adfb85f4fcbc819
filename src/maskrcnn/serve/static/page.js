// The maskrcnn serve page: send each chosen image to POST predict once, keep every
// detection it returns, and redraw on the client when the slider or a toggle changes.
"use strict";

const MASK_FILL_ALPHA = 110; // of 255: the image stays visible under the masks
const SMALL_IMAGE_SIDE = 640; // smaller images are drawn enlarged (whole factors) so labels stay readable

const state = { entries: [], queue: Promise.resolve(), pending: 0, health: null };
const $ = (id) => document.getElementById(id);

function instanceColor(i) {
  // Bright, well separated colours: hues stepped by the golden ratio (as overlays in Python).
  const h = (i * 0.618033988749895 + 0.12) % 1, s = i % 2 === 0 ? 0.8 : 0.65, v = 1;
  const k = Math.floor(h * 6), f = h * 6 - k, p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  const [r, g, b] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][k % 6];
  return [Math.round(r * 255), Math.round(g * 255), Math.round(b * 255)];
}

// One small canvas per instance: its mask inside its bounding rectangle, filled
// translucent with an opaque outline (touching instances such as nuclei stay apart).
function maskSprite(rle, color) {
  const crop = rleToCrop(rle);
  if (crop === null) return null;
  const { width, height, data } = crop;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const pixels = ctx.createImageData(width, height);
  const inside = (x, y) => x >= 0 && y >= 0 && x < width && y < height && data[y * width + x] === 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!inside(x, y)) continue;
      const edge = !inside(x - 1, y) || !inside(x + 1, y) || !inside(x, y - 1) || !inside(x, y + 1);
      const o = 4 * (y * width + x);
      pixels.data[o] = color[0];
      pixels.data[o + 1] = color[1];
      pixels.data[o + 2] = color[2];
      pixels.data[o + 3] = edge ? 255 : MASK_FILL_ALPHA;
    }
  }
  ctx.putImageData(pixels, 0, 0);
  return { canvas, x0: crop.x0, y0: crop.y0 };
}

function options() {
  return {
    threshold: Number($("threshold").value),
    masks: $("show-masks").checked,
    boxes: $("show-boxes").checked,
    labels: $("show-labels").checked,
  };
}

function drawEntry(entry) {
  const payload = entry.payload;
  if (!payload) return;
  const opts = options();
  const scale = Math.max(1, Math.floor(SMALL_IMAGE_SIDE / Math.max(payload.width, payload.height)));
  const canvas = entry.canvas;
  canvas.width = payload.width * scale;
  canvas.height = payload.height * scale;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false; // enlarged pixels and masks stay sharp
  if (entry.bitmap) {
    ctx.fillStyle = "#fff"; // transparent pixels on white, as the server read them
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(entry.bitmap, 0, 0, canvas.width, canvas.height);
  }
  else { ctx.fillStyle = "#444"; ctx.fillRect(0, 0, canvas.width, canvas.height); }

  // Lowest score first, so the most confident instance (and its label) ends on top.
  const shown = payload.results.map((row, i) => ({ row, i })).filter(({ row }) => row.score >= opts.threshold).reverse();
  if (opts.masks) {
    for (const { i } of shown) {
      const sprite = entry.sprites[i];
      if (sprite) {
        ctx.drawImage(sprite.canvas, sprite.x0 * scale, sprite.y0 * scale,
                      sprite.canvas.width * scale, sprite.canvas.height * scale);
      }
    }
  }
  const side = Math.max(canvas.width, canvas.height);
  const line = Math.max(1, Math.round(side / 400));
  const fontPx = Math.min(48, Math.max(12, Math.round(side / 45)));
  if (opts.boxes) {
    ctx.lineWidth = line;
    for (const { row, i } of shown) {
      const [x, y, w, h] = row.bbox.map((v) => v * scale);
      ctx.strokeStyle = `rgb(${instanceColor(i).join(",")})`;
      ctx.strokeRect(x + line / 2, y + line / 2, Math.max(w - line, 1), Math.max(h - line, 1));
    }
  }
  if (opts.labels) {
    ctx.font = `${fontPx}px system-ui, "DejaVu Sans", sans-serif`;
    ctx.textBaseline = "top";
    for (const { row, i } of shown) {
      const text = `${row.category_name} ${row.score.toFixed(2)}`;
      const [x, y] = row.bbox.map((v) => v * scale);
      const width = ctx.measureText(text).width + 6, height = fontPx + 4;
      const top = y - height >= 0 ? y - height : y; // above the box, or inside it at the top edge
      const left = Math.min(Math.max(0, x), Math.max(0, canvas.width - width));
      ctx.fillStyle = `rgb(${instanceColor(i).join(",")})`;
      ctx.fillRect(left, top, width, height);
      ctx.fillStyle = "#111";
      ctx.fillText(text, left + 3, top + 2);
    }
  }
  entry.shown = shown.length;
  entry.card.dataset.shown = String(shown.length);
  entry.card.dataset.total = String(payload.results.length);
  entry.card.querySelector(".card-status").textContent =
    `${shown.length} of ${payload.results.length} instances shown · ${payload.width}×${payload.height} · model ${payload.model_seconds.toFixed(2)} s`;
}

function updateSummary() {
  const opts = options();
  $("threshold-value").textContent = opts.threshold.toFixed(2);
  const done = state.entries.filter((e) => e.payload);
  const shown = done.reduce((sum, e) => sum + (e.shown || 0), 0);
  const total = done.reduce((sum, e) => sum + e.payload.results.length, 0);
  const summary = $("summary");
  summary.dataset.shown = String(shown);
  summary.dataset.total = String(total);
  summary.dataset.pending = String(state.pending);
  summary.textContent = state.entries.length === 0 ? "no images yet"
    : `${done.length} of ${state.entries.length} images done · ${shown} of ${total} instances shown (score ≥ ${opts.threshold.toFixed(2)})`
      + (state.pending ? ` · ${state.pending} running or waiting` : "");
  $("download-json").disabled = done.length === 0;
}

function redraw() {
  for (const entry of state.entries) drawEntry(entry);
  updateSummary();
}

async function predict(entry) {
  entry.card.dataset.state = "running";
  entry.card.querySelector(".card-status").textContent = "running the model…";
  try {
    const form = new FormData();
    form.append("file", entry.file, entry.file.name);
    const response = await fetch("predict", { method: "POST", body: form });
    const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    try {
      entry.bitmap = await createImageBitmap(entry.file);
    } catch (_) {
      entry.bitmap = null; // a format the server reads but this browser cannot show (e.g. TIFF)
    }
    if (entry.bitmap && (entry.bitmap.width !== body.width || entry.bitmap.height !== body.height)) {
      entry.bitmap = null; // the browser decoded it differently from the server: draw on grey, not misaligned
    }
    entry.sprites = body.results.map((row, i) => maskSprite(row.segmentation, instanceColor(i)));
    entry.payload = body;
    entry.card.dataset.state = "done";
    entry.card.querySelector(".download-png").disabled = false;
    drawEntry(entry);
    if (entry.bitmap === null) entry.card.querySelector(".card-status").textContent += " · (image not shown: this browser cannot decode it as the server did)";
  } catch (error) {
    entry.card.dataset.state = "error";
    entry.card.querySelector(".card-status").textContent = `error: ${error.message}`;
  } finally {
    state.pending -= 1;
    updateSummary();
  }
}

function addFiles(files) {
  for (const file of files) {
    const card = $("card-template").content.firstElementChild.cloneNode(true);
    card.querySelector(".file-name").textContent = file.name;
    const entry = { file, card, canvas: card.querySelector("canvas"), payload: null, bitmap: null, sprites: [], shown: 0 };
    card.querySelector(".download-png").addEventListener("click", () => downloadPng(entry));
    entry.canvas.addEventListener("click", () => card.classList.toggle("large"));
    $("results").appendChild(card);
    state.entries.push(entry);
    state.pending += 1;
    state.queue = state.queue.then(() => predict(entry)); // one request at a time, in order
  }
  updateSummary();
}

function saveBlob(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

function stem(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

function downloadPng(entry) {
  entry.canvas.toBlob((blob) => saveBlob(blob, `${stem(entry.file.name)}_pred.png`), "image/png");
}

// COCO results rows (as `maskrcnn predict` writes predictions.json) of the detections
// shown now: score >= the slider; image_id is the image's position on the page.
function cocoResults() {
  const threshold = options().threshold;
  const rows = [];
  state.entries.forEach((entry, index) => {
    if (!entry.payload) return;
    for (const row of entry.payload.results) {
      if (row.score >= threshold) rows.push({ ...row, image_id: index + 1 });
    }
  });
  return rows;
}

function downloadJson() {
  const blob = new Blob([JSON.stringify(cocoResults())], { type: "application/json" });
  saveBlob(blob, "predictions.json");
}

async function showModelInfo() {
  try {
    const health = await (await fetch("health")).json();
    state.health = health;
    const classes = health.class_names ? health.class_names.filter((n) => n !== "background" && n !== "__background__") : [];
    const named = classes.length > 8 ? `${classes.length} classes` : classes.join(", ");
    $("model-info").textContent = `${health.model} on ${health.device}${named ? " · " + named : ""}`
      + ` · uploads up to ${(health.max_upload_bytes / 1048576).toFixed(0)} MB`;
  } catch (error) {
    $("model-info").textContent = `cannot reach the server: ${error.message}`;
  }
}

function setUp() {
  $("file-input").addEventListener("change", (event) => {
    addFiles(Array.from(event.target.files));
    event.target.value = ""; // choosing the same file again adds it again
  });
  const zone = $("drop-zone");
  const page = document.body;
  page.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  page.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  page.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    addFiles(Array.from(event.dataTransfer.files).filter((f) => f.type.startsWith("image/") || f.type === ""));
  });
  $("threshold").addEventListener("input", redraw);
  for (const id of ["show-masks", "show-boxes", "show-labels"]) $(id).addEventListener("change", redraw);
  $("download-json").addEventListener("click", downloadJson);
  showModelInfo();
  updateSummary();
}

window.maskrcnnPage = { state, decodeRleCounts, rleToCrop, cocoResults, redraw };
setUp();
