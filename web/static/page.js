// imagevet's page script: history strip cells open their job, and a running job's
// page follows its server-sent events and swaps in the verdict without a reload.
"use strict";
document.addEventListener("click", (e) => {
  const cell = e.target.closest(".strip i");
  if (!cell) return;
  const ids = stripIDs(cell.parentElement);
  const i = Array.prototype.indexOf.call(cell.parentElement.children, cell);
  if (ids[i]) location.href = "/jobs/" + encodeURIComponent(ids[i]);
});
document.addEventListener("DOMContentLoaded", () => {
  for (const strip of document.querySelectorAll(".strip")) {
    const ids = stripIDs(strip);
    Array.prototype.forEach.call(strip.children, (c, i) => { c.title = ids[i] + ": " + c.className; });
  }
  showFatal();
  follow();
});
// follow keeps a job page without a result up to date. A running job's story so
// far (events, timeline, console) is the server's rendering, fetched again when an
// event comes and every two seconds for the console; a job that starts running,
// and the verdict, swap in the server's page without a reload.
function follow() {
  const live = document.getElementById("live");
  if (!live) return;
  const swapMain = async () => {
    const r = await fetch(live.dataset.part, { cache: "no-store" });
    if (!r.ok) return false;
    document.getElementById("main").innerHTML = await r.text();
    showFatal();
    return true;
  };
  let fetching = false, again = false;
  const refresh = async () => {
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      const r = await fetch(live.dataset.sofar, { cache: "no-store" });
      const html = r.ok ? await r.text() : "";
      const old = document.getElementById("sofar");
      if (old && html.startsWith('<div id="sofar">')) {
        const pre = old.querySelector("pre.console");
        const atBottom = !pre || pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        const top = pre ? pre.scrollTop : 0;
        old.outerHTML = html;
        const now = document.querySelector("#sofar pre.console");
        if (now) now.scrollTop = atBottom ? now.scrollHeight : top;
        tickElapsed();
      }
    } finally {
      fetching = false;
      if (again) { again = false; setTimeout(refresh, 250); }
    }
  };
  const es = new EventSource(live.dataset.events);
  let swapping = false, timer = null;
  es.addEventListener("progress", async () => {
    if (live.dataset.state !== "running") {
      // The job started: the server renders its running page.
      if (swapping) return;
      swapping = true;
      es.close();
      if (await swapMain()) follow();
      return;
    }
    refresh();
  });
  es.addEventListener("result", async () => {
    es.close();
    if (timer) clearInterval(timer);
    await swapMain();
  });
  if (live.dataset.state === "running") {
    const pre = document.querySelector("#sofar pre.console");
    if (pre) pre.scrollTop = pre.scrollHeight;
    timer = setInterval(() => { if (document.body.contains(live)) refresh(); else clearInterval(timer); }, 2000);
    tickElapsed();
  }
}
// tickElapsed counts a running job's elapsed time up every second.
let elapsedTick = null;
function tickElapsed() {
  if (elapsedTick) clearInterval(elapsedTick);
  const show = () => {
    const el = document.getElementById("elapsed");
    if (!el) { clearInterval(elapsedTick); return; }
    const s = Math.max(0, Math.round((Date.now() - Number(el.dataset.since)) / 1000));
    el.textContent = s < 60 ? s + "s" : Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  };
  show();
  elapsedTick = setInterval(show, 1000);
}
// showFatal scrolls the console box (not the page) to the line that failed the job.
function showFatal() {
  const f = document.querySelector("pre.console .fatal");
  if (f) f.parentElement.scrollTop = f.offsetTop - f.parentElement.offsetTop - f.parentElement.clientHeight / 2;
}
// stripIDs are a history strip's job ids: each is the strip's common prefix and
// its own rest.
function stripIDs(strip) {
  const prefix = strip.dataset.prefix || "";
  return strip.dataset.jobs.split(" ").map((rest) => prefix + rest);
}
