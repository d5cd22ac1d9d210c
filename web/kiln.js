// Kiln frontend extension: a live loss chart (with the validation loss as a second line), step/epoch/ETA
// and the samples over time (one row per prompt, one column per sample step) on each Kiln Train node, fed
// by "kiln.progress" messages keyed by node id; the server keeps the history, so a page reloaded mid-run
// redraws everything from GET /kiln/history. Also the caption editor (an "Edit captions" button on Kiln
// Load Dataset). Plain ES module, no build step, no CDN.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const TRAIN_NODE = "KilnTrainLora";
const PREVIEW_NODE = "KilnDatasetPreview";
const DATASET_NODE = "KilnLoadDataset";
const TIMELINE_COLUMNS = 8; // sample steps shown on the node: the first and the latest ones
const state = new Map(); // node id -> {points, validation, step, total, epoch, eta, samples, prompts, running}

function smooth(values, beta = 0.9) {
  const out = [];
  let avg = 0;
  values.forEach((v, i) => {
    avg = beta * avg + (1 - beta) * v;
    out.push(avg / (1 - Math.pow(beta, i + 1)));
  });
  return out;
}

function fmtEta(s) {
  if (s == null || !isFinite(s)) return "–";
  s = Math.round(s);
  const m = Math.floor(s / 60);
  return m ? `${m}m ${s % 60}s` : `${s}s`;
}

function drawChart(canvas, points, validation = []) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.fillStyle = "#1e1e1e";
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#555";
  ctx.strokeRect(pad, 6, w - pad - 6, h - pad - 6);
  if (points.length < 1) return;
  const steps = points.map((p) => p[0]);
  const vals = points.map((p) => p[1]);
  const vSteps = validation.map((p) => p[0]), vVals = validation.map((p) => p[1]);
  let lo = Math.min(...vals, ...vVals), hi = Math.max(...vals, ...vVals);
  if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
  const s0 = Math.min(...steps, ...vSteps), s1 = Math.max(...steps, ...vSteps, s0 + 1);
  const X = (s) => pad + (w - pad - 6) * (s - s0) / (s1 - s0);
  const Y = (v) => 6 + (h - pad - 12) * (1 - (v - lo) / (hi - lo));
  const line = (ys, color, width) => {
    ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath();
    ys.forEach((v, i) => (i ? ctx.lineTo(X(steps[i]), Y(v)) : ctx.moveTo(X(steps[i]), Y(v))));
    ctx.stroke();
  };
  line(vals, "rgba(120,160,220,0.45)", 1);
  line(smooth(vals), "#4fa3ff", 2);
  if (validation.length) {
    ctx.strokeStyle = "#f08a24"; ctx.fillStyle = "#f08a24"; ctx.lineWidth = 2; ctx.beginPath();
    validation.forEach(([s, v], i) => (i ? ctx.lineTo(X(s), Y(v)) : ctx.moveTo(X(s), Y(v))));
    ctx.stroke();
    for (const [s, v] of validation) { ctx.beginPath(); ctx.arc(X(s), Y(v), 2.5, 0, 2 * Math.PI); ctx.fill(); }
    ctx.font = "10px sans-serif";
    ctx.fillText("validation", w - 62, 18);
    ctx.fillStyle = "#4fa3ff"; ctx.fillText("train", w - 96, 18);
  }
  ctx.fillStyle = "#bbb"; ctx.font = "10px sans-serif";
  ctx.fillText(hi.toPrecision(3), 2, 14);
  ctx.fillText(lo.toPrecision(3), 2, h - pad);
  ctx.fillText(`step ${s1}`, w - 60, h - 8);
}

function ensureWidget(node) {
  if (node.kiln) return node.kiln;
  const root = document.createElement("div");
  root.className = "kiln-live";
  root.style.cssText = "display:flex;flex-direction:column;gap:4px;color:#ddd;font:12px sans-serif;";
  const status = document.createElement("div");
  status.className = "kiln-status";
  status.textContent = "waiting for training…";
  const canvas = document.createElement("canvas");
  canvas.className = "kiln-loss-chart";
  canvas.width = 320; canvas.height = 140;
  canvas.style.cssText = "width:100%;height:140px;";
  const samples = document.createElement("div");
  samples.className = "kiln-samples kiln-timeline";
  samples.style.cssText = "overflow:auto;max-height:260px;";
  root.append(status, canvas, samples);
  node.addDOMWidget("kiln_live", "kiln_live", root, { serialize: false, getMinHeight: () => 400 });
  node.kiln = { root, status, canvas, samples };
  return node.kiln;
}

function render(nodeId) {
  const node = app.graph?.getNodeById(Number(nodeId));
  const s = state.get(String(nodeId));
  if (!node || !s || node.comfyClass !== TRAIN_NODE) return;
  const ui = ensureWidget(node);
  const last = s.points.length ? s.points[s.points.length - 1][1] : null;
  ui.status.textContent = `${s.running ? "training" : "done"} · step ${s.step}/${s.total} · epoch ${s.epoch} · ` +
    `loss ${last == null ? "–" : last.toFixed(4)} · ETA ${s.running ? fmtEta(s.eta) : "–"}`;
  ui.canvas.dataset.points = String(s.points.length);
  drawChart(ui.canvas, s.points, s.validation || []);
  ui.canvas.dataset.validation = String((s.validation || []).length);
  renderTimeline(ui.samples, s.samples || [], s.prompts || []);
  node.setDirtyCanvas(true, true);
}

// Samples over time: one row per prompt, one column per sample step, step labels on top. Images are only
// rebuilt when the set of samples changes (a new sample step), not on every loss update.
function renderTimeline(box, refs, prompts) {
  const key = refs.map((r) => `${r.subfolder}/${r.filename}`).join("|");
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  let steps = [...new Set(refs.map((r) => r.step ?? 0))].sort((a, b) => a - b);
  if (steps.length > TIMELINE_COLUMNS) steps = [steps[0], ...steps.slice(-(TIMELINE_COLUMNS - 1))];
  const rows = [...new Set(refs.map((r) => r.prompt ?? 0))].sort((a, b) => a - b);
  const at = new Map(refs.map((r) => [`${r.step ?? 0}:${r.prompt ?? 0}`, r]));
  const table = document.createElement("table");
  table.style.cssText = "border-collapse:collapse;font:10px sans-serif;color:#bbb;";
  const head = table.insertRow();
  head.insertCell().textContent = "";
  for (const step of steps) {
    const th = head.insertCell();
    th.className = "kiln-step-label";
    th.textContent = `step ${step}`;
    th.style.cssText = "text-align:center;padding:0 2px;";
  }
  for (const p of rows) {
    const tr = table.insertRow();
    const label = tr.insertCell();
    label.textContent = prompts[p] ?? `prompt ${p + 1}`;
    label.title = label.textContent;
    label.style.cssText = "max-width:80px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;padding-right:4px;";
    for (const step of steps) {
      const td = tr.insertCell();
      const ref = at.get(`${step}:${p}`);
      if (!ref) continue;
      const img = document.createElement("img");
      img.className = "kiln-sample";
      img.dataset.step = String(step);
      img.dataset.prompt = String(p);
      img.title = `${prompts[p] ?? ""} — step ${step}`;
      img.src = api.apiURL(`/view?filename=${encodeURIComponent(ref.filename)}&subfolder=${encodeURIComponent(ref.subfolder || "")}&type=${ref.type || "output"}`);
      img.style.cssText = "width:64px;height:64px;object-fit:contain;background:#111;display:block;image-rendering:pixelated;";
      td.append(img);
    }
  }
  box.replaceChildren(table);
}

function onProgress(data) {
  const id = String(data.node);
  const prev = state.get(id);
  if (data.append && prev) {
    const pts = prev.points;
    for (const p of data.points) if (!pts.length || pts[pts.length - 1][0] < p[0]) pts.push(p);
    state.set(id, { ...data, points: pts });
  } else {
    state.set(id, { ...data, points: [...(data.points || [])] });
  }
  render(id);
}

async function loadHistory() {
  try {
    const res = await api.fetchApi("/kiln/history");
    if (!res.ok) return;
    const all = await res.json();
    // One entry per run (prompt id + node id): each node shows its latest run.
    const latest = new Map();
    for (const h of Object.values(all)) {
      const id = String(h.node);
      if (!latest.has(id) || latest.get(id).started <= h.started) latest.set(id, h);
    }
    for (const [id, h] of latest) { state.set(id, h); render(id); }
  } catch (e) {
    console.warn("Kiln: no training history", e);
  }
}


// ---- Caption editor ------------------------------------------------------------------------------------
// A panel over the canvas: pages through a dataset's images with their captions; the caption text is
// edited and saved (the server writes it atomically, in the encoding the loader reads); each image's tags
// show as chips with the dataset's frequency (x removes the tag from that caption); a tag field with
// autocomplete from the frequency table adds or removes a tag on every selected image. All file work is
// done by the server's /kiln/captions routes, which keep every path inside the dataset folder.
const PAGE = 24;

async function captionsCall(path, body) {
  const res = body
    ? await api.fetchApi(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
    : await api.fetchApi(path);
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok || data.error) throw new Error(data.error || `HTTP ${res.status}`);
  return data;
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children);
  return e;
}

class CaptionEditor {
  constructor() {
    this.root = null;
    this.data = null;
    this.page = 0;
    this.current = null;
    this.selected = new Set();
  }

  async open(dataset, ext = ".txt") {
    this.dataset = dataset;
    this.ext = ext || ".txt";
    this.page = 0;
    this.selected.clear();
    this.build();
    try {
      this.load(await captionsCall(`/kiln/captions?dataset=${encodeURIComponent(dataset)}&ext=${encodeURIComponent(this.ext)}`));
      if (this.data.images.length) this.show(this.data.images[0].file);
    } catch (e) {
      this.message(String(e.message || e), true);
    }
  }

  close() {
    this.root?.remove();
    this.root = null;
  }

  build() {
    this.close();
    const btn = (text, cls, onclick) => el("button", { textContent: text, className: cls, onclick });
    this.title = el("div", { className: "kiln-captions-title" });
    this.status = el("div", { className: "kiln-captions-status" });
    this.grid = el("div", { className: "kiln-captions-grid" });
    this.pager = el("div", { className: "kiln-captions-pager" });
    this.image = el("img", { className: "kiln-captions-image" });
    this.text = el("textarea", { className: "kiln-caption-text", rows: 5, spellcheck: false });
    this.text.addEventListener("keydown", (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "s") { e.preventDefault(); this.save(); }
      e.stopPropagation(); // keep the canvas's shortcuts away from typing
    });
    this.chips = el("div", { className: "kiln-caption-chips" });
    this.tagInput = el("input", { className: "kiln-tag-input", placeholder: "tag (autocompletes from the dataset)" });
    this.tagInput.setAttribute("list", "kiln-tag-list");
    this.tagInput.addEventListener("keydown", (e) => e.stopPropagation());
    this.tagList = el("datalist", { id: "kiln-tag-list" });
    this.freq = el("div", { className: "kiln-tag-frequencies-panel" });
    const bulk = el("div", { className: "kiln-captions-bulk" }, this.tagInput, this.tagList,
      btn("Add to selected", "kiln-tag-add", () => this.bulk(true)),
      btn("Remove from selected", "kiln-tag-remove", () => this.bulk(false)),
      btn("Select page", "kiln-select-page", () => { this.pageItems().forEach((i) => this.selected.add(i.file)); this.renderGrid(); }),
      btn("Clear selection", "kiln-select-none", () => { this.selected.clear(); this.renderGrid(); }));
    const editor = el("div", { className: "kiln-captions-editor" }, this.image, this.text,
      el("div", {}, btn("Save caption (Ctrl+S)", "kiln-caption-save", () => this.save())), this.chips);
    const body = el("div", { className: "kiln-captions-body" },
      el("div", { className: "kiln-captions-left" }, this.grid, this.pager), editor,
      el("div", { className: "kiln-captions-right" }, el("b", { textContent: "Tag frequencies" }), this.freq));
    this.root = el("div", { className: "kiln-captions" },
      el("div", { className: "kiln-captions-header" }, this.title, this.status, btn("Close", "kiln-captions-close", () => this.close())),
      bulk, body);
    const style = el("style", { textContent: `
      .kiln-captions{position:fixed;inset:40px;z-index:10000;background:#202020;color:#ddd;font:13px sans-serif;
        border:1px solid #555;border-radius:8px;display:flex;flex-direction:column;gap:8px;padding:10px;box-shadow:0 8px 40px #000a}
      .kiln-captions button{background:#333;color:#ddd;border:1px solid #555;border-radius:4px;padding:3px 8px;cursor:pointer}
      .kiln-captions-header{display:flex;gap:12px;align-items:center}.kiln-captions-title{font-weight:bold;font-size:15px}
      .kiln-captions-status{flex:1;color:#aaa}.kiln-captions-status.error{color:#f66}
      .kiln-captions-bulk{display:flex;gap:6px;align-items:center}.kiln-tag-input{width:260px;background:#111;color:#ddd;border:1px solid #555;padding:3px}
      .kiln-captions-body{flex:1;display:flex;gap:10px;min-height:0}
      .kiln-captions-left{width:330px;display:flex;flex-direction:column;gap:6px;overflow:auto}
      .kiln-captions-grid{display:grid;grid-template-columns:repeat(4,76px);gap:4px}
      .kiln-thumb{position:relative;width:76px;height:76px;background:#111;border:2px solid transparent;cursor:pointer}
      .kiln-thumb.current{border-color:#4fa3ff}.kiln-thumb img{width:100%;height:100%;object-fit:contain;image-rendering:pixelated}
      .kiln-thumb input{position:absolute;left:2px;top:2px;margin:0}
      .kiln-captions-editor{flex:1;display:flex;flex-direction:column;gap:6px;min-width:0}
      .kiln-captions-image{max-width:100%;max-height:45vh;object-fit:contain;background:#111;align-self:flex-start;min-width:256px;min-height:256px;image-rendering:pixelated}
      .kiln-caption-text{width:100%;box-sizing:border-box;background:#111;color:#eee;border:1px solid #555;font:13px monospace}
      .kiln-caption-chips,.kiln-tag-frequencies-panel{display:flex;flex-wrap:wrap;gap:4px;align-content:flex-start}
      .kiln-chip{background:#2d3f55;border-radius:10px;padding:1px 8px;white-space:nowrap}.kiln-chip small{color:#9bd}
      .kiln-chip .x{margin-left:6px;cursor:pointer;color:#f99}.kiln-captions-right{width:260px;overflow:auto}
      .kiln-tag-frequencies-panel .kiln-chip{background:#333;cursor:pointer}` });
    this.root.append(style);
    document.body.append(this.root);
  }

  message(text, error = false) {
    if (!this.status) return;
    this.status.textContent = text;
    this.status.classList.toggle("error", error);
  }

  load(data) {
    this.data = data;
    this.byFile = new Map(data.images.map((i) => [i.file, i]));
    this.title.textContent = `Kiln captions — ${data.dataset} (${data.images.length} images, ${this.ext})`;
    this.tagList.replaceChildren(...Object.keys(data.frequency).map((t) => el("option", { value: t })));
    this.freq.replaceChildren(...Object.entries(data.frequency).map(([t, n]) => {
      const chip = el("span", { className: "kiln-chip", title: "click: put in the tag field" }, t, " ", el("small", { textContent: String(n) }));
      chip.onclick = () => { this.tagInput.value = t; };
      return chip;
    }));
    this.renderGrid();
    if (this.current && this.byFile.has(this.current)) this.show(this.current, false);
  }

  pageItems() {
    return this.data.images.slice(this.page * PAGE, (this.page + 1) * PAGE);
  }

  imageURL(file) {
    return api.apiURL(`/kiln/captions/image?dataset=${encodeURIComponent(this.dataset)}&file=${encodeURIComponent(file)}`);
  }

  renderGrid() {
    if (!this.data) return;
    this.grid.replaceChildren(...this.pageItems().map((item) => {
      const box = el("input", { type: "checkbox", checked: this.selected.has(item.file), title: "select for bulk tag edits" });
      box.onclick = (e) => { e.stopPropagation(); box.checked ? this.selected.add(item.file) : this.selected.delete(item.file); this.message(`${this.selected.size} selected`); };
      const thumb = el("div", { className: "kiln-thumb" + (item.file === this.current ? " current" : ""), title: `${item.file}\n${item.caption}` },
        el("img", { src: this.imageURL(item.file), loading: "lazy" }), box);
      thumb.dataset.file = item.file;
      thumb.onclick = () => this.show(item.file);
      return thumb;
    }));
    const pages = Math.max(1, Math.ceil(this.data.images.length / PAGE));
    this.pager.replaceChildren(
      el("button", { textContent: "‹ prev", disabled: this.page === 0, onclick: () => { this.page--; this.renderGrid(); } }),
      el("span", { textContent: ` page ${this.page + 1} / ${pages} ` }),
      el("button", { textContent: "next ›", disabled: this.page >= pages - 1, onclick: () => { this.page++; this.renderGrid(); } }));
  }

  show(file, reloadText = true) {
    const item = this.byFile.get(file);
    if (!item) return;
    this.current = file;
    this.image.src = this.imageURL(file);
    if (reloadText) this.text.value = item.caption;
    this.text.dataset.file = file;
    this.chips.replaceChildren(...item.tags.map((t) => {
      const x = el("span", { className: "x", textContent: "×", title: "remove this tag from this caption (saved)" });
      x.onclick = () => this.edit([file], [], [t]);
      return el("span", { className: "kiln-chip" }, t, " ", el("small", { textContent: String(this.data.frequency[t] ?? "") }), x);
    }));
    if (item.error) this.message(item.error, true);
    this.grid.querySelectorAll(".kiln-thumb").forEach((d) => d.classList.toggle("current", d.dataset.file === file));
  }

  async save() {
    if (!this.current) return;
    try {
      const file = this.current;
      this.load(await captionsCall("/kiln/captions/save", { dataset: this.dataset, ext: this.ext, file, caption: this.text.value }));
      this.show(file);
      this.message(`saved ${file}`);
    } catch (e) {
      this.message(String(e.message || e), true);
    }
  }

  async edit(files, add, remove) {
    try {
      const data = await captionsCall("/kiln/captions/bulk", { dataset: this.dataset, ext: this.ext, files, add, remove });
      this.load(data);
      if (this.current) this.show(this.current);
      this.message(`changed ${data.changed.length} caption(s)`);
    } catch (e) {
      this.message(String(e.message || e), true);
    }
  }

  bulk(add) {
    const tag = this.tagInput.value.trim();
    const files = this.selected.size ? [...this.selected] : (this.current ? [this.current] : []);
    if (!tag || !files.length) { this.message("type a tag and select images first", true); return; }
    return this.edit(files, add ? [tag] : [], add ? [] : [tag]);
  }
}

const captionEditor = new CaptionEditor();
window.kilnCaptionEditor = captionEditor; // also reachable from the browser console and the tests

function widgetValue(node, name, fallback) {
  const w = node.widgets?.find((x) => x.name === name);
  return w ? w.value : fallback;
}

// Inputs the node schema marks advanced: the 2026 frontend folds them only in its Nodes 2.0 renderer (Vue nodes).
// Its classic canvas, the default, hides a widget only when widget.advanced is set, which it leaves unset, and still
// lays hidden ones out as gaps (computeSize counts every widget that is not `hidden`). On Kiln's own nodes in the
// classic canvas, folded advanced widgets are therefore `hidden` too, and a "Show advanced inputs" button toggles
// the node's own showAdvanced flag, the one the Vue renderer's button and the canvas's menu toggle as well. On the
// 2025-10 host no input is advanced, so nothing here applies.
function setting(id) {
  return !!app.extensionManager?.setting?.get?.(id);
}

function classicFolding(node) {
  return !setting("Comfy.VueNodes.Enabled") && !setting("Comfy.Node.AlwaysShowAdvancedWidgets") && !node.showAdvanced;
}

function isLinked(node, widget) {
  return !!node.inputs?.some((i) => i.widget?.name === widget.name && i.link != null);
}

function fitHeight(node) {
  node.setSize([node.size[0], node.computeSize()[1]]);
  node.setDirtyCanvas?.(true, true);
}

function foldAdvancedInputs(node) {
  const advanced = (node.widgets || []).filter((w) => w.options?.advanced);
  if (!advanced.length || node.kilnFold) return;
  // A seed's "control after generate" widget folds with its seed.
  for (const w of [...advanced, ...advanced.flatMap((a) => a.linkedWidgets || [])]) {
    let own = !!w.hidden; // what the frontend itself sets stays in force
    w.advanced = true;
    Object.defineProperty(w, "hidden", {
      configurable: true,
      enumerable: true,
      get: () => own || (classicFolding(node) && !isLinked(node, w)), // a connected input stays in view
      set: (v) => { own = v; },
    });
  }
  const button = node.addWidget("button", "kiln_advanced", null, () => {
    node.showAdvanced = !node.showAdvanced;
    fitHeight(node);
  });
  // Read from showAdvanced when drawn, so a toggle from the canvas menu or a loaded graph shows the right word.
  Object.defineProperty(button, "label", {
    configurable: true,
    get: () => (node.showAdvanced ? "Hide advanced inputs" : `Show advanced inputs (${advanced.length})`),
    set: () => {},
  });
  button.serialize = false; // not an input: saved workflows keep their widget values as they were
  Object.defineProperty(button, "hidden", { configurable: true, get: () => setting("Comfy.VueNodes.Enabled"), set: () => {} });
  // Below the inputs, above the live chart or any other display widget.
  node.widgets.pop();
  const at = node.widgets.findIndex((w) => w.serialize === false);
  node.widgets.splice(at < 0 ? node.widgets.length : at, 0, button);
  node.kilnFold = true;
  fitHeight(node);
}

function renderAll() {
  for (const id of state.keys()) render(id);
}

app.registerExtension({
  name: "kiln.live",
  async setup() {
    api.addEventListener("kiln.progress", (e) => onProgress(e.detail));
    await loadHistory();
  },
  // Node ids are only known once a loaded graph is configured: draw the kept history then.
  async afterConfigureGraph() {
    if (!state.size) await loadHistory();
    renderAll();
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (String(nodeData.name).startsWith("Kiln")) {
      const created = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = created?.apply(this, arguments);
        foldAdvancedInputs(this);
        return r;
      };
      // A saved graph restores the node's unfolded size: fit it to what shows (classic canvas only).
      const configured = nodeType.prototype.onConfigure;
      nodeType.prototype.onConfigure = function () {
        const r = configured?.apply(this, arguments);
        if (this.kilnFold && classicFolding(this)) fitHeight(this);
        return r;
      };
    }
    if (nodeData.name === TRAIN_NODE) {
      const created = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = created?.apply(this, arguments);
        ensureWidget(this);
        if (state.has(String(this.id))) render(this.id);
        return r;
      };
    }
    if (nodeData.name === DATASET_NODE) {
      const created = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = created?.apply(this, arguments);
        const button = this.addWidget("button", "Edit captions", null, () =>
          captionEditor.open(String(widgetValue(this, "path", "")), String(widgetValue(this, "caption_extension", ".txt"))));
        button.serialize = false; // not an input: saved workflows keep their widget values as they were
        return r;
      };
    }
    if (nodeData.name === PREVIEW_NODE) {
      const executed = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (message) {
        executed?.apply(this, arguments);
        const text = (message?.text || []).join("\n");
        if (!this.kilnTags) {
          const pre = document.createElement("pre");
          pre.className = "kiln-tag-frequencies";
          pre.style.cssText = "max-height:220px;overflow:auto;margin:0;color:#ddd;font:11px monospace;white-space:pre-wrap;";
          this.addDOMWidget("kiln_tags", "kiln_tags", pre, { serialize: false, getMinHeight: () => 120 });
          this.kilnTags = pre;
        }
        this.kilnTags.textContent = text;
      };
    }
  },
});
