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
  follow();
});
// follow keeps a job page without a result up to date: progress events go into the
// table as they come; a job that starts running, and the verdict, swap in the
// server's rendering of the page without a reload.
function follow() {
  const live = document.getElementById("live");
  if (!live) return;
  const set = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text || ""; };
  const swap = async () => {
    const r = await fetch(live.dataset.part, { cache: "no-store" });
    if (!r.ok) return false;
    document.getElementById("main").innerHTML = await r.text();
    showFatal();
    return true;
  };
  const es = new EventSource(live.dataset.events);
  let swapping = false;
  es.addEventListener("progress", async (m) => {
    const p = JSON.parse(m.data);
    if (live.dataset.state !== "running") {
      // The job started: the server renders its running page.
      if (swapping) return;
      swapping = true;
      es.close();
      if (await swap()) follow();
      return;
    }
    const tr = document.createElement("tr");
    for (const v of [new Date(p.time).toISOString().slice(11, 19), p.stage, p.event, p.message || ""]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    document.getElementById("events").appendChild(tr);
    if (p.event === "start") set("stage", p.stage);
    set("event", p.event);
    set("message", p.message);
  });
  es.addEventListener("result", async () => {
    es.close();
    await swap();
  });
  const elapsed = document.getElementById("elapsed");
  if (elapsed) {
    const since = Number(elapsed.dataset.since);
    const tick = setInterval(() => {
      if (!document.body.contains(elapsed)) { clearInterval(tick); return; }
      elapsed.textContent = Math.max(0, Math.round((Date.now() - since) / 1000)) + "s";
    }, 1000);
  }
}
// showFatal scrolls the console box (not the page) to the line that failed the job.
function showFatal() {
  const f = document.querySelector("pre.console .fatal");
  if (f) f.parentElement.scrollTop = f.offsetTop - f.parentElement.offsetTop - f.parentElement.clientHeight / 2;
}
