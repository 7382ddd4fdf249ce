// alreid annotate: the page. Plain JS; talks to the JSON API next to it (relative URLs).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { pair: null, shownAt: 0, status: null, busy: false, pending: null, polling: null };

function annotator() {
  return ($("annotator").value || "").trim() || "anonymous";
}

async function api(method, url, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(url, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { message: r.statusText }; }
  return { ok: r.ok, status: r.status, data };
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// zoom and pan ----------------------------------------------------------------------------------------
function makeViewer(img) {
  const box = img.parentElement;
  const v = { s: 1, x: 0, y: 0, drag: null };
  const apply = () => { img.style.transform = `translate(${v.x}px, ${v.y}px) scale(${v.s})`; };
  v.fit = () => {
    const bw = box.clientWidth, bh = box.clientHeight;
    const iw = img.naturalWidth || 1, ih = img.naturalHeight || 1;
    v.s = Math.min(bw / iw, bh / ih);
    v.x = (bw - iw * v.s) / 2; v.y = (bh - ih * v.s) / 2;
    apply();
  };
  img.addEventListener("load", v.fit);
  box.addEventListener("wheel", (e) => {
    e.preventDefault();
    const rect = box.getBoundingClientRect();
    const mx = e.clientX - rect.left, my = e.clientY - rect.top;
    const f = Math.exp(-e.deltaY * 0.0015);
    v.x = mx - (mx - v.x) * f; v.y = my - (my - v.y) * f; v.s *= f;
    apply();
  }, { passive: false });
  box.addEventListener("mousedown", (e) => { v.drag = [e.clientX - v.x, e.clientY - v.y]; box.style.cursor = "grabbing"; });
  window.addEventListener("mouseup", () => { v.drag = null; box.style.cursor = ""; });
  window.addEventListener("mousemove", (e) => { if (v.drag) { v.x = e.clientX - v.drag[0]; v.y = e.clientY - v.drag[1]; apply(); } });
  box.addEventListener("dblclick", v.fit);
  return v;
}
const viewers = [makeViewer($("img-u")), makeViewer($("img-v"))];

// rendering -------------------------------------------------------------------------------------------
function caption(info) {
  const rows = Object.entries(info.meta || {}).map(([k, val]) => `<tr><td>${esc(k)}</td><td>${esc(val)}</td></tr>`).join("");
  return `<span class="id">image ${esc(info.image_id)}</span><span class="file">${esc(info.file)}</span>` +
         (rows ? `<table>${rows}</table>` : "");
}

function thumbs(images) {
  return images.map((im) => `<img class="thumb" src="${esc(im.url)}" alt="image ${esc(im.image_id)}" title="image ${esc(im.image_id)}">`).join("");
}

function showPair(pair) {
  state.pair = pair;
  const box = $("pair");
  if (!pair) {
    box.dataset.pairId = "";
    box.dataset.imageU = ""; box.dataset.imageV = "";
    $("annotate").hidden = true;
    return;
  }
  $("annotate").hidden = false;
  box.dataset.pairId = String(pair.pair_id);
  box.dataset.imageU = pair.images[0].image_id;
  box.dataset.imageV = pair.images[1].image_id;
  $("img-u").src = pair.images[0].url;
  $("img-v").src = pair.images[1].url;
  $("cap-u").innerHTML = caption(pair.images[0]);
  $("cap-v").innerHTML = caption(pair.images[1]);
  $("why").textContent = `Why this pair (cycle ${pair.cycle}, #${pair.position + 1}): ${pair.why.text}`;
  state.shownAt = performance.now();
}

function showStatus(s) {
  state.status = s;
  const done = s.answered + s.implied + s.unsure_before;
  const pct = s.batch_size ? (100 * done / s.batch_size) : 100;
  $("bar-fill").style.width = `${pct.toFixed(1)}%`;
  $("progress-text").textContent = `cycle ${s.cycle} of ${s.cycles}: ${done} / ${s.batch_size} done ` +
    `(${s.answered} answered, ${s.implied} implied for free) · ${s.total_answered} answers in total · ` +
    `${s.implied_total} implied in total`;
  $("summary").textContent = `${s.dataset} · ${s.method} + ${s.trainer}` + (s.read_only ? " · read-only" : "");
  $("summary").dataset.state = s.state;
  const panel = $("cycle-panel");
  const t = s.training || {};
  panel.hidden = !(s.state === "batch_done" || s.state === "training" || t.error);
  $("btn-next-cycle").hidden = s.state !== "batch_done" || s.read_only;
  $("cycle-text").textContent = s.state === "training" ? `Training cycle ${t.cycle}…` :
    (s.state === "batch_done" ? `The batch of cycle ${s.cycle} is done. Next cycle refines the clusters with your answers, trains, and picks new pairs.` : "");
  $("train-bar").hidden = s.state !== "training";
  $("train-fill").style.width = `${(100 * (t.fraction || 0)).toFixed(0)}%`;
  const elapsed = t.started ? ` (${Math.max(0, Date.now() / 1000 - t.started).toFixed(0)} s)` : "";
  $("train-text").textContent = t.error ? `Training failed: ${t.error}` : (s.state === "training" ? t.stage + elapsed : "");
  $("annotator").parentElement.hidden = s.read_only;
  const msg = $("message");
  const texts = {
    waiting: "Every remaining pair is being answered by someone else; new ones appear when their leases end.",
    finished: `All ${s.cycles} cycles are done. Export the answers with 'alreid annotate export'.`,
    read_only: "Read-only review: the answers given so far are listed below.",
  };
  const key = s.read_only ? "read_only" : (s.state === "finished" ? "finished" : (state.waiting ? "waiting" : null));
  msg.hidden = !key;
  msg.textContent = key ? texts[key] : "";
  showMetrics(s);
  ["btn-same", "btn-different", "btn-unsure", "btn-undo"].forEach((id) => { $(id).disabled = s.read_only || state.busy; });
}

const METRICS = ["mAP", "mINP", "top1", "top5", "BAKS", "AUC"];
function showMetrics(s) {
  const recs = (s.records || []);
  const sec = $("metrics");
  if (!s.evaluates || recs.length === 0) { sec.hidden = true; return; }
  sec.hidden = false;
  const head = "<tr><th>cycle</th><th>pairs</th>" + METRICS.map((m) => `<th>${m}</th>`).join("") + "</tr>";
  const rows = recs.map((r) => `<tr><td>${r.cycle}</td><td>${r.pairs_cum}</td>` +
    METRICS.map((m) => `<td>${r[m] == null ? "" : (100 * r[m]).toFixed(1)}</td>`).join("") + "</tr>").join("");
  $("metrics-table").innerHTML = head + rows;
}

// actions ---------------------------------------------------------------------------------------------
async function loadNext() {
  const r = await api("GET", `api/next?annotator=${encodeURIComponent(annotator())}`);
  if (!r.ok) { flash(r.data.message); return; }
  state.waiting = r.data.state === "waiting";
  showPair(r.data.pair);
  showStatus(r.data.status);
  if (r.data.status.read_only) loadReview();
  schedulePoll(r.data.status);
}

function schedulePoll(s) {
  clearTimeout(state.polling);
  if (s.state === "training" || state.waiting) {
    state.polling = setTimeout(async () => {
      const r = await api("GET", "api/status");
      if (r.ok && (r.data.state !== s.state || state.waiting)) { await loadNext(); } else if (r.ok) { showStatus(r.data); schedulePoll(r.data); }
    }, state.waiting ? 3000 : 700);
  }
}

function flash(text) {
  const msg = $("message");
  msg.hidden = false;
  msg.textContent = text;
}

async function send(answer, withdraw) {
  if (!state.pair || state.busy) return;
  state.busy = true;
  const body = { pair_id: state.pair.pair_id, answer, annotator: annotator(),
                 seconds: (performance.now() - state.shownAt) / 1000, withdraw: withdraw || [] };
  const r = await api("POST", "api/answer", body);
  state.busy = false;
  if (r.status === 409 && r.data.earlier) { showConflict(answer, r.data); return; }
  if (!r.ok) { await loadNext(); flash(r.data.message || "error"); return; }
  await loadNext();
}

function showConflict(answer, data) {
  state.pending = { answer, earlier: data.earlier.map((a) => a.answer_id) };
  $("conflict-text").textContent = `You answered "${answer}", but these earlier answers imply "${data.implied}". ` +
    "Which should be kept? Nothing is stored until you choose.";
  $("conflict-pairs").innerHTML = data.earlier.map((a) =>
    `<div class="ep">${thumbs(a.images)}<span class="tag ${esc(a.answer)}">${esc(a.answer)}</span>` +
    `<span>cycle ${a.cycle}, by ${esc(a.annotator)}</span></div>`).join("");
  $("conflict").showModal();
}

$("btn-keep-earlier").addEventListener("click", () => { $("conflict").close(); state.pending = null; loadNext(); });
$("btn-keep-mine").addEventListener("click", () => {
  const p = state.pending; $("conflict").close(); state.pending = null;
  if (p) send(p.answer, p.earlier);
});

async function undo() {
  if (state.busy) return;
  state.busy = true;
  const r = await api("POST", "api/undo", { annotator: annotator() });
  state.busy = false;
  if (!r.ok) { flash(r.data.message); return; }
  await loadNext();
}

async function nextCycle() {
  const r = await api("POST", "api/next-cycle");
  if (!r.ok) { flash(r.data.message); return; }
  showStatus(r.data);
  schedulePoll(r.data);
}

async function loadReview() {
  const r = await api("GET", "api/answers");
  if (!r.ok) return;
  $("review").hidden = false;
  $("review-list").innerHTML = r.data.map((a) =>
    `<div class="ep">${thumbs(a.images)}<span class="tag ${esc(a.answer)}">${esc(a.answer)}</span>` +
    `<span>cycle ${a.cycle}, by ${esc(a.annotator)}</span></div>`).join("") || "<p>No answers yet.</p>";
}

$("btn-same").addEventListener("click", () => send("same"));
$("btn-different").addEventListener("click", () => send("different"));
$("btn-unsure").addEventListener("click", () => send("unsure"));
$("btn-undo").addEventListener("click", undo);
$("btn-next-cycle").addEventListener("click", nextCycle);

document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" || e.ctrlKey || e.metaKey || e.altKey || $("conflict").open) return;
  const k = e.key.toLowerCase();
  if (k === "s") send("same");
  else if (k === "d") send("different");
  else if (k === "u") send("unsure");
  else if (k === "z") undo();
  else return;
  e.preventDefault();
});

const nameBox = $("annotator");
nameBox.value = localStorage.getItem("alreid.annotator") || "";
let shownName = annotator();
nameBox.addEventListener("change", async () => {
  localStorage.setItem("alreid.annotator", nameBox.value.trim());
  if (shownName !== annotator()) await api("POST", "api/release", { annotator: shownName });  // the old name's pair goes back
  shownName = annotator();
  loadNext();
});
nameBox.addEventListener("keydown", (e) => { if (e.key === "Enter") nameBox.blur(); });
loadNext();
