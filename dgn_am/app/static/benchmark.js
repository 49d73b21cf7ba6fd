// The benchmark page: table.md's paragraphs and tables (intervals in brackets), then the folder's figures.
"use strict";
async function start() {
  const box = document.getElementById("bench");
  const r = await fetch("/api/benchmark");
  const b = await r.json();
  if (!r.ok) { box.textContent = b.detail; return; }
  document.getElementById("folder").textContent = b.folder;
  for (const block of b.blocks) {
    if (block.text !== undefined) {
      const p = document.createElement("p");
      p.className = "note";
      p.textContent = block.text.replaceAll("`", "");
      box.appendChild(p);
      continue;
    }
    const t = document.createElement("table");
    const head = t.createTHead().insertRow();
    for (const h of block.table.head) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
    const body = t.createTBody();
    for (const row of block.table.rows) { const tr = body.insertRow(); for (const c of row) tr.insertCell().textContent = c.replaceAll("`", ""); }
    box.appendChild(t);
  }
  const figs = document.createElement("div");
  figs.className = "figures";
  for (const name of b.figures) {
    const h = document.createElement("h3");
    h.textContent = name;
    const img = document.createElement("img");
    img.src = `/api/benchmark/figures/${encodeURIComponent(name)}`;
    img.alt = name;
    figs.append(h, img);
  }
  box.appendChild(figs);
  document.body.dataset.ready = "1";
}
start();
