// Live updates for the Gatehouse dashboard. Every page works without this
// file; it only refreshes a run's status and logs, and the jobs' last
// outcomes, from the JSON API (same origin, the session cookie rides along).
"use strict";

const POLL_MS = 1000;
const JOBS_POLL_MS = 5000;

function formatDuration(ms) {
  // Same format as the server's format_duration.
  ms = Math.max(0, ms);
  const s = Math.floor(ms / 1000);
  const pad = (n) => String(n).padStart(2, "0");
  if (s < 60) return (ms / 1000).toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " m " + pad(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + pad(Math.floor((s % 3600) / 60)) + " m";
}

function utc(ms) {
  return ms == null ? "" : new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

async function getJson(path) {
  const response = await fetch(path, { headers: { accept: "application/json" }, cache: "no-store" });
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

// The reason code beside a status where it tells more than the status;
// the same rule as the server's shown_code.
function causeBadge(run) {
  const code = run.reason_code;
  if (!code || code === "cancelled" || code === "timeout") return null;
  const cause = document.createElement("span");
  cause.className = "cause";
  cause.dataset.code = code;
  cause.textContent = code.replaceAll("_", " ");
  return cause;
}

function setText(id, text) {
  const el = document.getElementById(id);
  if (el) el.textContent = text;
}

async function followRun(section) {
  const id = section.dataset.run;
  for (;;) {
    let run;
    try {
      run = (await getJson("/api/runs/" + encodeURIComponent(id))).run;
    } catch (e) {
      return; // Session gone or scheduler away: the page still reads fine.
    }
    const status = document.getElementById("run-status");
    status.textContent = run.status;
    status.dataset.status = run.status;
    const terminal = !["queued", "starting", "running"].includes(run.status);
    const neverStarted = terminal && run.started_at == null && run.status !== "skipped";
    setText("run-started", neverStarted ? "never" : utc(run.started_at));
    setText("run-finished", utc(run.finished_at));
    setText("run-exit", run.exit_code == null ? "" : String(run.exit_code));
    setText("run-reason", run.reason || "");
    const code = document.querySelector("#run-reason-code code");
    if (code) code.textContent = run.reason_code || "";
    if (run.started_at != null) {
      setText("run-duration", formatDuration((run.finished_at ?? Date.now()) - run.started_at));
    }
    if (terminal) {
      section.dataset.terminal = "true";
      document.getElementById("cancel")?.remove();
      try {
        const logs = await fetch("/api/runs/" + encodeURIComponent(id) + "/logs", { cache: "no-store" });
        if (logs.ok) setText("run-logs", await logs.text());
      } catch (e) {
        // Keep what the page had.
      }
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function refreshJobs(table) {
  let jobs;
  try {
    jobs = (await getJson("/api/jobs")).jobs;
  } catch (e) {
    return;
  }
  for (const job of jobs) {
    const cell = table.querySelector('tr[data-job="' + CSS.escape(job.name) + '"] td.last-outcome');
    if (!cell || !job.last_run) continue;
    const run = job.last_run;
    if (cell.dataset.status === run.status && cell.querySelector("a")?.getAttribute("href") === "/runs/" + run.id) continue;
    cell.dataset.status = run.status;
    const link = document.createElement("a");
    link.href = "/runs/" + run.id;
    const badge = document.createElement("span");
    badge.className = "status";
    badge.dataset.status = run.status;
    badge.textContent = run.status.replace("_", " ");
    link.append(badge);
    const cause = causeBadge(run);
    if (cause) link.append(" ", cause);
    cell.replaceChildren(link, " " + utc(run.queued_at));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const section = document.querySelector("section#run[data-run]");
  if (section && section.dataset.terminal !== "true") followRun(section);
  const table = document.getElementById("jobs");
  if (table) setInterval(() => refreshJobs(table), JOBS_POLL_MS);
});
