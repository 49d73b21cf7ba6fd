// The toolbox page: plain JS over the JSON API (dgn_am/app/server.py).
"use strict";
const $ = (id) => document.getElementById(id);
const state = { info: null, inputId: null, analysis: null, unit: null, webcam: null, frameTimes: [], serverTimes: [] };
window.toolbox = state;  // read by the browser test

async function api(url, options) {
  const r = await fetch(url, options);
  const body = await r.json();
  if (!r.ok) throw new Error(body.detail || r.statusText);
  return body;
}

function say(text) { $("status").textContent = text; }

function figure(src, caption) {
  const f = document.createElement("figure");
  const img = document.createElement("img");
  img.src = src;
  f.appendChild(img);
  const c = document.createElement("figcaption");
  c.textContent = caption;
  f.appendChild(c);
  return f;
}

// ---- input ----

async function analyze(form) {
  form.append("layer", $("layer-select").value);
  const started = performance.now();
  const a = await api("/api/analyze", { method: "POST", body: form });
  state.inputId = a.input_id;
  state.analysis = a;
  $("input-image").src = a.image;
  drawPrediction(a.prediction);
  drawGrid(a);
  drawUnitMap();
  if (state.unit && $("live-explain").checked) await explainUnit();
  const ms = performance.now() - started;
  state.frameTimes.push(ms);
  state.serverTimes.push(a.ms);
  $("timing").textContent = `update: ${ms.toFixed(0)} ms (activations ${a.ms.toFixed(0)} ms on the server)`;
}

function showTest(i) {
  const n = state.info.test_count;
  i = ((i % n) + n) % n;
  $("test-index").value = i;
  const form = new FormData();
  form.append("input_id", `test:${i}`);
  return analyze(form).catch((e) => say(e.message));
}

function reanalyze() {
  if (!state.inputId) return showTest(0);
  const form = new FormData();
  form.append("input_id", state.inputId);
  return analyze(form).catch((e) => say(e.message));
}

async function upload(file) {
  const form = new FormData();
  form.append("file", file);
  try { await analyze(form); say(`uploaded ${file.name}`); } catch (e) { say(`upload refused: ${e.message}`); }
}

// ---- webcam: frames cropped to a square, made grey (and inverted), sent one at a time ----

async function toggleWebcam() {
  if (state.webcam) {
    state.webcam.getTracks().forEach((t) => t.stop());
    state.webcam = null;
    $("webcam").textContent = "start webcam";
    $("video").style.display = "none";
    return;
  }
  try {
    state.webcam = await navigator.mediaDevices.getUserMedia({ video: true });
  } catch (e) { say(`no webcam: ${e.message}`); return; }
  $("video").srcObject = state.webcam;
  $("video").style.display = "block";
  $("webcam").textContent = "stop webcam";
  frameLoop();
}

function grabFrame() {
  const v = $("video"), side = Math.min(v.videoWidth, v.videoHeight), out = 112;
  const c = document.createElement("canvas");
  c.width = c.height = out;
  const g = c.getContext("2d");
  g.drawImage(v, (v.videoWidth - side) / 2, (v.videoHeight - side) / 2, side, side, 0, 0, out, out);
  if ($("invert").checked) {
    const d = g.getImageData(0, 0, out, out);
    for (let i = 0; i < d.data.length; i += 4) for (let k = 0; k < 3; k++) d.data[i + k] = 255 - d.data[i + k];
    g.putImageData(d, 0, 0);
  }
  return new Promise((resolve) => c.toBlob(resolve, "image/png"));
}

async function frameLoop() {
  while (state.webcam) {
    if ($("video").videoWidth === 0) { await new Promise((r) => setTimeout(r, 50)); continue; }
    const form = new FormData();
    form.append("file", await grabFrame(), "frame.png");
    try { await analyze(form); } catch (e) { say(e.message); await new Promise((r) => setTimeout(r, 500)); }
  }
}

// ---- prediction and the activation grid ----

function drawPrediction(rows) {
  const box = $("prediction");
  box.innerHTML = "";
  for (const r of rows.slice(0, 5)) {
    const line = document.createElement("div");
    line.className = "bar";
    line.innerHTML = `<span></span><div style="width:${(100 * r.p).toFixed(1)}px"></div><span>${r.p.toFixed(3)}</span>`;
    line.firstChild.textContent = r.name;
    box.appendChild(line);
  }
}

function shade(v, top) {  // positive: grey to white; negative: dark blue
  const t = Math.max(-1, Math.min(1, v / top));
  return t >= 0 ? [255 * t, 255 * t, 255 * t] : [0, 0, 120 * -t];
}

function drawGrid(a) {
  const grid = $("grid"), [c] = a.shape, spatial = a.shape.length === 3;
  const top = Math.max(1e-6, ...a.values.map(Math.abs)), best = new Set(a.top);
  const size = spatial ? a.shape[1] * a.shape[2] : 1;
  if (grid.childElementCount !== c || grid.dataset.layer !== a.layer) {
    grid.innerHTML = "";
    grid.dataset.layer = a.layer;
    for (let i = 0; i < c; i++) {
      const el = document.createElement(spatial ? "canvas" : "div");
      if (spatial) { el.width = a.shape[2]; el.height = a.shape[1]; } else if (c <= 64) el.textContent = i;
      el.className = "unit";
      el.dataset.index = i;
      el.addEventListener("click", () => selectUnit(`${a.layer}:${i}`));
      grid.appendChild(el);
    }
  }
  for (let i = 0; i < c; i++) {
    const el = grid.children[i];
    el.classList.toggle("top", best.has(i));
    el.classList.toggle("selected", state.unit === `${a.layer}:${i}`);
    el.title = `${unitName(`${a.layer}:${i}`)}  ${spatial ? "max " : ""}${a.scores[i].toFixed(2)}`;
    if (!spatial) {
      const [r, g, b] = shade(a.values[i], top);
      el.style.background = `rgb(${r},${g},${b})`;
      el.style.color = r > 128 ? "#000" : "#ccc";
      continue;
    }
    const g = el.getContext("2d"), img = g.createImageData(a.shape[2], a.shape[1]);
    for (let p = 0; p < size; p++) {
      const [r, gg, b] = shade(a.values[i * size + p], top);
      img.data.set([r, gg, b, 255], 4 * p);
    }
    g.putImageData(img, 0, 0);
  }
}

// ---- a clicked unit ----

function drawUnitMap() {  // the selected unit on this input, enlarged, with its value
  const a = state.analysis, c = $("unit-map");
  if (!a || !state.unit || !state.unit.startsWith(`${a.layer}:`)) return;
  const i = +state.unit.split(":").pop(), spatial = a.shape.length === 3;
  const [h, w] = spatial ? a.shape.slice(1) : [1, 1], top = Math.max(1e-6, ...a.values.map(Math.abs));
  c.width = w; c.height = h;
  const g = c.getContext("2d"), img = g.createImageData(w, h);
  for (let p = 0; p < h * w; p++) img.data.set([...shade(a.values[i * h * w + p], top), 255], 4 * p);
  g.putImageData(img, 0, 0);
  $("unit-value").textContent = `${spatial ? "max" : "value"} on this input: ${a.scores[i].toFixed(3)}` +
    ` (rank ${[...a.scores].sort((x, y) => y - x).indexOf(a.scores[i]) + 1} of ${a.scores.length})`;
}

function unitName(address) {  // "fc8:9 (Ankle boot)" for the output layer's units
  const [layer, index] = address.split(":");
  const name = layer === state.info.output_layer ? state.info.classes[+index] : undefined;
  return name ? `${address} (${name})` : address;
}

async function selectUnit(address) {
  state.unit = address;
  $("unit-title").textContent = `Unit ${unitName(address)}`;
  for (const el of $("grid").children) el.classList.toggle("selected", `${$("grid").dataset.layer}:${el.dataset.index}` === address);
  drawUnitMap();
  await Promise.all([preferred(address), datasetViews(address), explainUnit()]);
}

async function preferred(address) {
  const method = $("method-select").value, box = $("preferred"), bar = $("preferred-progress");
  box.innerHTML = "";
  bar.hidden = false;
  const url = `/api/preferred?unit=${encodeURIComponent(address)}&method=${encodeURIComponent(method)}`;
  for (;;) {
    let r;
    try { r = await api(url); } catch (e) { say(e.message); bar.hidden = true; return; }
    if (state.unit !== address || $("method-select").value !== method) return;  // the user moved on
    if (r.status === "done") {
      for (const im of r.images) box.appendChild(figure(im.url || "", im.failed ? "failed" : `seed ${im.seed}: ${im.activation.toFixed(2)}`));
      bar.hidden = true;
      return;
    }
    if (r.status === "error") { say(`preferred inputs failed: ${r.detail}`); bar.hidden = true; return; }
    bar.value = r.progress;
    await new Promise((res) => setTimeout(res, 400));
  }
}

async function datasetViews(address) {
  $("top-images").innerHTML = $("patches").innerHTML = "";
  say("reading the test set ...");
  let r;
  try { r = await api(`/api/dataset?unit=${encodeURIComponent(address)}`); } catch (e) { say(e.message); return; }
  if (state.unit !== address) return;
  for (const it of r.images) $("top-images").appendChild(figure(it.image, `#${it.index} ${it.label ?? ""} ${it.value.toFixed(2)}`));
  for (const it of r.patches) $("patches").appendChild(figure(it.patch, `#${it.index} ${it.value.toFixed(2)}`));
  if (!r.patches.length) $("patches").innerHTML = '<p class="note">none: this unit sees the whole image</p>';
  say("");
}

async function explainUnit() {
  const address = state.unit;
  if (!address || !state.inputId) return;
  let r;
  const q = `input_id=${encodeURIComponent(state.inputId)}&unit=${encodeURIComponent(address)}`;
  try { r = await api(`/api/explain?${q}`); } catch (e) { say(e.message); return; }
  const box = $("explain");
  box.innerHTML = "";
  for (const m of r.maps) {
    if (m.error) { const f = figure("", `${m.title}: n/a`); f.title = m.error; box.appendChild(f); continue; }
    box.appendChild(figure(m.overlay, m.title));
  }
}

// ---- keys, as in the original toolbox: move through units and layers without the mouse ----

function onKey(e) {
  if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName) || e.ctrlKey || e.metaKey) return;
  const grid = $("grid"), layers = $("layer-select"), n = grid.childElementCount;
  const current = state.unit && state.unit.startsWith(`${grid.dataset.layer}:`) ? +state.unit.split(":").pop() : -1;
  const actions = {
    ArrowRight: () => n && selectUnit(`${grid.dataset.layer}:${(current + 1) % n}`),
    ArrowLeft: () => n && selectUnit(`${grid.dataset.layer}:${(current - 1 + n) % n}`),
    ArrowDown: () => { layers.selectedIndex = Math.min(layers.length - 1, layers.selectedIndex + 1); reanalyze(); },
    ArrowUp: () => { layers.selectedIndex = Math.max(0, layers.selectedIndex - 1); reanalyze(); },
    n: () => showTest(+$("test-index").value + 1),
    p: () => showTest(+$("test-index").value - 1),
    r: () => showTest(Math.floor(Math.random() * state.info.test_count)),
    w: toggleWebcam,
  };
  if (actions[e.key]) { e.preventDefault(); actions[e.key](); }
}

// ---- start ----

async function start() {
  state.info = await api("/api/info");
  $("model").textContent = `${state.info.model}: input ${state.info.input.channels}x${state.info.input.size.join("x")}`;
  for (const l of state.info.layers) $("layer-select").add(new Option(`${l.name} (${l.shape.join("x")})`, l.name));
  $("layer-select").value = state.info.default_layer;
  for (const m of state.info.methods) $("method-select").add(new Option(m, m));
  $("method-select").value = state.info.method;
  $("test-index").max = state.info.test_count - 1;
  $("prev").onclick = () => showTest(+$("test-index").value - 1);
  $("next").onclick = () => showTest(+$("test-index").value + 1);
  $("random").onclick = () => showTest(Math.floor(Math.random() * state.info.test_count));
  $("test-index").onchange = () => showTest(+$("test-index").value);
  $("upload").onchange = (e) => e.target.files.length && upload(e.target.files[0]);
  $("webcam").onclick = toggleWebcam;
  $("layer-select").onchange = reanalyze;
  $("method-select").onchange = () => state.unit && preferred(state.unit);
  document.addEventListener("keydown", onKey);
  await showTest(0);
  document.body.dataset.ready = "1";
}

start().catch((e) => say(e.message));
