// imagevet's page script: history strip cells open their job, and a running job's
// page follows its server-sent events and swaps in the verdict without a reload.
"use strict";
document.addEventListener("click", (e) => {
  const cell = e.target.closest(".strip i");
  if (!cell) return;
  const ids = cell.parentElement.dataset.jobs.split(" ");
  const i = Array.prototype.indexOf.call(cell.parentElement.children, cell);
  if (ids[i]) location.href = "/jobs/" + encodeURIComponent(ids[i]);
});
document.addEventListener("DOMContentLoaded", () => {
  for (const strip of document.querySelectorAll(".strip")) {
    const ids = strip.dataset.jobs.split(" ");
    Array.prototype.forEach.call(strip.children, (c, i) => { c.title = ids[i] + ": " + c.className; });
  }
  showFatal();
  const live = document.getElementById("live");
  if (!live) return;
  const rows = document.getElementById("events");
  const set = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text || ""; };
  const es = new EventSource(live.dataset.events);
  es.addEventListener("progress", (m) => {
    const p = JSON.parse(m.data);
    const tr = document.createElement("tr");
    for (const v of [new Date(p.time).toISOString().slice(11, 19), p.stage, p.event, p.message || ""]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    rows.appendChild(tr);
    set("note", p.worker ? "running on " + p.worker + ", attempt " + p.attempt + ": stage" : "running: stage");
    if (p.event === "start") set("stage", p.stage);
    set("event", p.event);
    set("message", p.message);
  });
  es.addEventListener("result", async () => {
    es.close();
    const r = await fetch(live.dataset.part, { cache: "no-store" });
    if (r.ok) {
      document.getElementById("main").innerHTML = await r.text();
      showFatal();
    }
  });
});
// showFatal scrolls the console box (not the page) to the line that failed the job.
function showFatal() {
  const f = document.querySelector("pre.console .fatal");
  if (f) f.parentElement.scrollTop = f.offsetTop - f.parentElement.offsetTop - f.parentElement.clientHeight / 2;
}
