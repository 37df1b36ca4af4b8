// The live page: one tile per stream (MJPEG video + stats), refreshed from /api/state twice a second.
// Everything shown comes from this server; text is set with textContent, never parsed as HTML.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const query = token ? "?token=" + encodeURIComponent(token) : "";
const tiles = new Map();

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(value, digits, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return (typeof value === "number" ? value.toFixed(digits) : String(value)) + (unit || "");
}

function videoUrl(name) {
  const sep = query ? "&" : "?";
  return "/stream/" + encodeURIComponent(name) + ".mjpg" + query + sep + "t=" + Date.now();
}

function makeTile(name) {
  const tile = el("section", "tile");
  tile.dataset.stream = name;
  tile.dataset.frame = "-1";
  const title = el("h2");
  title.append(el("span", "name", name), el("span", "frame", "frame –"));
  const img = el("img", "video");
  img.alt = "live video of " + name;
  img.src = videoUrl(name);
  img.addEventListener("error", () => setTimeout(() => { img.src = videoUrl(name); }, 2000));
  const stats = el("div", "stats");
  const cells = {};
  for (const [key, label] of [["fps", "FPS"], ["p50", "p50"], ["p95", "p95"], ["stale", "stale dropped"],
                              ["reopens", "reopens"], ["viewers", "viewers"], ["dets", "detections"],
                              ["size", "size"], ["sent", "sent/failed"]]) {
    const cell = el("div");
    cells[key] = el("span", "v", "–");
    cell.append(el("span", "k", label + " "), cells[key]);
    stats.append(cell);
  }
  const why = el("div", "why hidden");
  const counts = el("div", "counts hidden");
  const events = el("div", "events hidden");
  events.append(el("div", "k muted", "recent events"), el("ol"));
  tile.append(title, img, stats, why, counts, events);
  document.getElementById("tiles").append(tile);
  const parts = { tile, frame: title.querySelector(".frame"), cells, why, counts, events };
  tiles.set(name, parts);
  return parts;
}

function flatten(counts, prefix, out) {
  for (const [key, value] of Object.entries(counts || {})) {
    if (value !== null && typeof value === "object") flatten(value, prefix + key + ".", out);
    else out.push([prefix + key, value]);
  }
  return out;
}

function describeEvent(event) {
  if (event === null || typeof event !== "object") return String(event);
  const kind = event.type || event.event || event.kind || "event";
  const rest = Object.entries(event).filter(([k]) => !["type", "event", "kind", "stream"].includes(k))
    .map(([k, v]) => k + "=" + (typeof v === "number" ? +v.toFixed(3) : JSON.stringify(v)));
  return kind + " " + rest.join(" ");
}

function render(state) {
  const health = document.getElementById("health");
  health.textContent = state.ok ? "healthy" : "failing";
  health.className = "badge " + (state.ok ? "ok" : "failing");
  document.getElementById("uptime").textContent = "up " + fmt(state.uptime_s, 0, " s");
  const rtsp = Object.values(state.rtsp || {});
  document.getElementById("links").textContent = rtsp.length ? "RTSP: " + rtsp.join("  ") : "";
  for (const s of state.streams) {
    const t = tiles.get(s.name) || makeTile(s.name);
    t.tile.dataset.frame = String(s.frame);
    t.tile.dataset.frames = String(s.frames);
    t.frame.textContent = "frame " + (s.frame >= 0 ? s.frame : "–");
    t.tile.classList.toggle("failing", Boolean(s.failing));
    t.cells.fps.textContent = fmt(s.fps, 1);
    t.cells.p50.textContent = fmt(s.latency_p50_ms, 1, " ms");
    t.cells.p95.textContent = fmt(s.latency_p95_ms, 1, " ms");
    t.cells.stale.textContent = fmt(s.dropped_stale_frames, 0);
    t.cells.reopens.textContent = fmt(s.reopens, 0);
    t.cells.viewers.textContent = fmt(s.viewers, 0);
    t.cells.dets.textContent = fmt(s.detections, 0);
    t.cells.size.textContent = s.width ? s.width + "×" + s.height : "–";
    t.cells.sent.textContent = fmt(s.events_sent, 0) + " / " + fmt(s.events_failed, 0);
    t.why.textContent = s.failing || "";
    t.why.classList.toggle("hidden", !s.failing);
    const counts = flatten(s.counts, "", []);
    t.counts.replaceChildren(...counts.map(([k, v]) => el("span", "", k + ": " + v)));
    t.counts.classList.toggle("hidden", counts.length === 0);
    const list = t.events.querySelector("ol");
    list.replaceChildren(...(s.events || []).map((e) => el("li", "", describeEvent(e))));
    t.events.classList.toggle("hidden", !(s.events || []).length);
  }
}

async function poll() {
  try {
    const response = await fetch("/api/state" + query, { cache: "no-store" });
    if (response.status === 401) throw new Error("unauthorised: open this page with ?token=TOKEN");
    if (!response.ok) throw new Error("state: HTTP " + response.status);
    render(await response.json());
    document.getElementById("error").textContent = "";
  } catch (err) {
    document.getElementById("error").textContent = String(err.message || err);
    const health = document.getElementById("health");
    health.textContent = "no connection";
    health.className = "badge failing";
  }
  setTimeout(poll, 500);
}

// Recorded events (--record): a thumbnail of the track and a link to the clip, served by the recorder's id.
function evidenceUrl(id, suffix) {
  return "/evidence/" + encodeURIComponent(id) + suffix + query;
}

function recordedItem(item) {
  const e = item.event || {};
  const li = el("li", "recorded-item");
  li.dataset.id = item.id;
  if (item.thumb) {
    const link = el("a");
    link.href = evidenceUrl(item.id, ".jpg");
    const img = el("img", "thumb");
    img.alt = "snapshot of " + (e.class || "the object");
    img.src = evidenceUrl(item.id, "-thumb.jpg");
    link.append(img);
    li.append(link);
  } else {
    li.append(el("span", "thumb none", item.snapshot === false ? "snapshot pending" : "no snapshot"));
  }
  const when = e.wall_time ? new Date(e.wall_time * 1000).toLocaleTimeString() : "";
  const what = [item.stream, e.type, e.zone || e.line || "", e.direction || "",
                e.track_id !== undefined ? (e.class || "track") + " #" + e.track_id : "", when]
    .filter(Boolean).join(" · ");
  li.append(el("span", "what", what));
  if (item.clip) {
    const clip = el("a", "clip", "clip");
    clip.href = evidenceUrl(item.id, ".mp4");
    li.append(clip);
  } else {
    li.append(el("span", "clip muted", "clip pending"));
  }
  return li;
}

async function pollRecorded() {
  try {
    const response = await fetch("/api/events" + query + (query ? "&" : "?") + "limit=20", { cache: "no-store" });
    if (response.ok) {
      const answer = await response.json();
      document.getElementById("recorded").classList.toggle("hidden", !answer.recording);
      const list = document.getElementById("recorded-list");
      const key = JSON.stringify(answer.events);
      if (list.dataset.key !== key) {  // unchanged: keep the images rather than load them again
        list.dataset.key = key;
        list.replaceChildren(...answer.events.map(recordedItem));
      }
    }
  } catch (err) {
    // the state poll reports a lost connection
  }
  setTimeout(pollRecorded, 2000);
}

poll();
pollRecorded();
