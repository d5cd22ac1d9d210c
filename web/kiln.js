// Kiln frontend extension: a live loss chart, step/epoch/ETA and the latest samples on each Kiln Train
// node, fed by "kiln.progress" messages keyed by node id; the server keeps the history, so a page reloaded
// mid-run redraws the whole chart from GET /kiln/history. Plain ES module, no build step, no CDN.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const TRAIN_NODE = "KilnTrainLora";
const PREVIEW_NODE = "KilnDatasetPreview";
const state = new Map(); // node id -> {points, step, total, epoch, eta, samples, running}

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

function drawChart(canvas, points) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.fillStyle = "#1e1e1e";
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = "#555";
  ctx.strokeRect(pad, 6, w - pad - 6, h - pad - 6);
  if (points.length < 1) return;
  const steps = points.map((p) => p[0]);
  const vals = points.map((p) => p[1]);
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (hi - lo < 1e-12) { lo -= 0.5; hi += 0.5; }
  const s0 = Math.min(...steps), s1 = Math.max(...steps, s0 + 1);
  const X = (s) => pad + (w - pad - 6) * (s - s0) / (s1 - s0);
  const Y = (v) => 6 + (h - pad - 12) * (1 - (v - lo) / (hi - lo));
  const line = (ys, color, width) => {
    ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath();
    ys.forEach((v, i) => (i ? ctx.lineTo(X(steps[i]), Y(v)) : ctx.moveTo(X(steps[i]), Y(v))));
    ctx.stroke();
  };
  line(vals, "rgba(120,160,220,0.45)", 1);
  line(smooth(vals), "#4fa3ff", 2);
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
  samples.className = "kiln-samples";
  samples.style.cssText = "display:flex;gap:4px;flex-wrap:wrap;";
  root.append(status, canvas, samples);
  node.addDOMWidget("kiln_live", "kiln_live", root, { serialize: false, getMinHeight: () => 220 });
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
  drawChart(ui.canvas, s.points);
  ui.samples.replaceChildren(...(s.samples || []).map((ref) => {
    const img = document.createElement("img");
    img.className = "kiln-sample";
    img.src = api.apiURL(`/view?filename=${encodeURIComponent(ref.filename)}&subfolder=${encodeURIComponent(ref.subfolder || "")}&type=${ref.type || "output"}&t=${Date.now()}`);
    img.style.cssText = "width:96px;height:96px;object-fit:contain;background:#111;";
    return img;
  }));
  node.setDirtyCanvas(true, true);
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
    for (const [id, h] of Object.entries(all)) { state.set(id, h); render(id); }
  } catch (e) {
    console.warn("Kiln: no training history", e);
  }
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
    if (nodeData.name === TRAIN_NODE) {
      const created = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = created?.apply(this, arguments);
        ensureWidget(this);
        if (state.has(String(this.id))) render(this.id);
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
