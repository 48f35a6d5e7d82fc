// citylake — the network explorer (issue #34). Reads the published marts through the API with the
// user's token (nothing else: no new data path), draws them with MapLibre GL JS (served by
// citylake from its npm package, never a CDN) on the basemap the city configures, or none.
// The page's state is in the URL fragment (#view=load&line=…), so a view can be shared; the
// token never is (it stays in this tab's sessionStorage).
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "citylake-token";
const state = { view: "load", line: "", direction: "0", month: "", day_type: "weekday", time_band: "07-09 pointe du matin" };
const SPEED_BINS = [[0, "#d7191c", "< 10"], [10, "#fdae61", "10–15"], [15, "#ffd966", "15–20"], [20, "#a6d96a", "20–30"], [30, "#1a9641", "≥ 30"]];
let token = null;
let map = null;
let shown = 0;

function say(text) { $("status").textContent = text; }

function fmt(value, digits = 0) {
  return value === null || value === undefined ? "—" : Number(value).toLocaleString("fr-FR", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function esc(text) {
  const span = document.createElement("span");
  span.textContent = text === null || text === undefined ? "" : String(text);
  return span.innerHTML;
}

async function api(path, params = []) {
  const url = new URL(path, location.origin);
  for (const [k, v] of params) url.searchParams.append(k, v);
  const answer = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  if (answer.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
    throw new Error("jeton refusé");
  }
  if (!answer.ok) throw new Error(`${url.pathname} : ${answer.status}`);
  return answer.json();
}

async function rows(mart, filters, order) {
  let all = [];
  let offset = 0;
  for (;;) {
    const params = filters.map((f) => ["filter", f]).concat([["limit", "5000"], ["offset", String(offset)]]);
    if (order) params.push(["order_by", order]);
    const page = await api(`/v1/marts/${mart}/rows`, params);
    all = all.concat(page.rows);
    if (page.next_offset === null) return all;
    offset = page.next_offset;
  }
}

function features(list) {
  return {
    type: "FeatureCollection",
    features: list.filter((r) => r.geometry).map((r) => {
      const { geometry, ...properties } = r;
      return { type: "Feature", geometry, properties };
    }),
  };
}

function monthRange(first, last) {
  const out = [];
  let [y, m] = last.split("-").map(Number);
  const [y0, m0] = first.split("-").map(Number);
  while ((y > y0 || (y === y0 && m >= m0)) && out.length < 36) {
    out.push(`${y}-${String(m).padStart(2, "0")}-01`);
    m -= 1;
    if (m === 0) { m = 12; y -= 1; }
  }
  return out;
}

function readHash() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, hash.get("token"));
    hash.delete("token");
    history.replaceState(null, "", `${location.pathname}${location.search}#${hash}`);
  }
  for (const key of Object.keys(state)) if (hash.get(key) !== null) state[key] = hash.get(key);
}

function writeHash() {
  history.replaceState(null, "", `${location.pathname}${location.search}#${new URLSearchParams(state)}`);
}

function showLogin() {
  $("app").hidden = true;
  $("login").hidden = false;
}

function bounds(collection) {
  const box = [Infinity, Infinity, -Infinity, -Infinity];
  const visit = (c) => {
    if (typeof c[0] === "number") {
      box[0] = Math.min(box[0], c[0]); box[1] = Math.min(box[1], c[1]);
      box[2] = Math.max(box[2], c[0]); box[3] = Math.max(box[3], c[1]);
    } else c.forEach(visit);
  };
  collection.features.forEach((f) => visit(f.geometry.coordinates));
  return box[0] === Infinity ? null : [[box[0], box[1]], [box[2], box[3]]];
}

// -- the chart beside the map: the serpent de charge, segment after segment along the line ------
function chain(segments) {
  // order the line's segments from its first stop: follow from -> to, the busiest branch first
  const next = new Map();
  const targets = new Set(segments.map((s) => s.to_stop_id));
  for (const s of segments) {
    const list = next.get(s.from_stop_id) || [];
    list.push(s);
    next.set(s.from_stop_id, list);
  }
  const starts = segments.filter((s) => !targets.has(s.from_stop_id));
  let at = (starts.length ? starts : segments).reduce((a, b) => (b.trips_observed > a.trips_observed ? b : a), (starts.length ? starts : segments)[0]);
  const out = [];
  const seen = new Set();
  while (at && !seen.has(at.from_stop_id) && out.length < segments.length) {
    out.push(at);
    seen.add(at.from_stop_id);
    const options = (next.get(at.to_stop_id) || []).filter((s) => !seen.has(s.from_stop_id));
    at = options.sort((a, b) => b.trips_observed - a.trips_observed)[0];
  }
  return out;
}

function serpent(ordered) {
  if (!ordered.length) return "<p class='muted'>aucune course observée pour ces choix</p>";
  const w = 360, h = 220, padB = 20, padL = 30;
  const top = Math.max(...ordered.map((s) => Math.max(s.p90_load || 0, s.mean_capacity || 0, s.mean_load || 0))) * 1.1 || 1;
  const bw = (w - padL) / ordered.length;
  const y = (v) => h - padB - (v / top) * (h - padB - 10);
  let svg = `<svg id="serpent" viewBox="0 0 ${w} ${h}" width="100%" role="img" aria-label="serpent de charge">`;
  ordered.forEach((s, i) => {
    svg += `<rect class="bar" x="${(padL + i * bw + 0.5).toFixed(1)}" y="${y(s.mean_load || 0).toFixed(1)}" width="${Math.max(bw - 1, 1).toFixed(1)}" height="${(h - padB - y(s.mean_load || 0)).toFixed(1)}" fill="#7aa7d6"><title>${esc(s.from_stop_name)} → ${esc(s.to_stop_name)} : ${fmt(s.mean_load, 1)} (p90 ${fmt(s.p90_load, 0)})</title></rect>`;
  });
  svg += `<polyline fill="none" stroke="#1c2733" stroke-width="1.2" points="${ordered.map((s, i) => `${(padL + (i + 0.5) * bw).toFixed(1)},${y(s.p90_load || 0).toFixed(1)}`).join(" ")}"/>`;
  const cap = Math.max(...ordered.map((s) => s.mean_capacity || 0));
  if (cap) svg += `<line x1="${padL}" x2="${w}" y1="${y(cap).toFixed(1)}" y2="${y(cap).toFixed(1)}" stroke="#b3261e" stroke-dasharray="4 3"/><text x="${padL + 2}" y="${(y(cap) - 3).toFixed(1)}" font-size="9" fill="#b3261e">capacité ${fmt(cap)}</text>`;
  svg += `<text x="2" y="10" font-size="9">voyageurs</text><text x="${padL}" y="${h - 5}" font-size="9">${esc(ordered[0].from_stop_name)} →</text></svg>`;
  return svg + "<p class='muted'>Charge moyenne à bord par tronçon (barres), 90e centile (trait), capacité (tirets).</p>";
}

// -- views ------------------------------------------------------------------------------------
function monthFilters() {
  return [`month:eq:${state.month}`, `day_type:eq:${state.day_type}`, `time_band:eq:${state.time_band}`];
}

async function drawLoad() {
  const segments = await rows("mart_segment_loads", monthFilters().concat([`route_short_name:eq:${state.line}`, `direction_id:eq:${state.direction}`]));
  const collection = features(segments);
  map.getSource("segments").setData(collection);
  const top = Math.max(1, ...segments.map((s) => s.mean_load || 0));
  map.setPaintProperty("segments", "line-width", ["interpolate", ["linear"], ["coalesce", ["get", "mean_load"], 0], 0, 1.5, top, 14]);
  map.setPaintProperty("segments", "line-color", ["step", ["coalesce", ["get", "load_factor"], 0], "#1f5fa8", 0.6, "#d9822b", 0.9, "#b3261e"]);
  const ordered = chain(segments);
  $("side-title").textContent = `Ligne ${state.line}, sens ${state.direction} — ${state.time_band}`;
  $("chart").innerHTML = serpent(ordered);
  $("legend").innerHTML = "<div class='legend-row'><span class='swatch' style='background:#1f5fa8'></span>charge / capacité &lt; 0,6</div>"
    + "<div class='legend-row'><span class='swatch' style='background:#d9822b'></span>0,6 – 0,9</div>"
    + "<div class='legend-row'><span class='swatch' style='background:#b3261e'></span>≥ 0,9</div>"
    + "<p class='muted'>Épaisseur proportionnelle à la charge moyenne. Cliquer un arrêt pour sa fréquentation.</p>";
  return { collection, bars: ordered.length };
}

async function drawSpeed() {
  const segments = await rows("mart_segment_speeds", monthFilters().concat(["observations:ge:1"]));
  const collection = features(segments);
  map.getSource("segments").setData(collection);
  map.setPaintProperty("segments", "line-width", 3);
  map.setPaintProperty("segments", "line-color", ["step", ["coalesce", ["get", "median_speed_kmh"], 0], ...SPEED_BINS.flatMap(([from, colour], i) => (i === 0 ? [colour] : [from, colour]))]);
  const slow = segments.filter((s) => s.observations >= 5 && (s.length_m || 0) >= 150)
    .sort((a, b) => a.median_speed_kmh - b.median_speed_kmh).slice(0, 10);
  $("side-title").textContent = `Vitesse de marche par tronçon — ${state.time_band}`;
  $("chart").innerHTML = "<table><tr><th>tronçon (ligne)</th><th>médiane km/h</th><th>passages</th></tr>"
    + slow.map((s) => `<tr><td>${esc(s.from_stop_name)} → ${esc(s.to_stop_name)} (${esc(s.route_short_name)})</td><td>${fmt(s.median_speed_kmh, 1)}</td><td>${s.observations}</td></tr>`).join("")
    + "</table><p class='muted'>Les dix tronçons les plus lents (au moins 5 passages, 150 m et plus).</p>";
  $("legend").innerHTML = SPEED_BINS.map(([, colour, label]) => `<div class='legend-row'><span class='swatch' style='background:${colour}'></span>${label} km/h</div>`).join("");
  return { collection, bars: slow.length };
}

async function drawParking() {
  const parks = await rows("mart_parking_occupancy_monthly", [`month:eq:${state.month}`]);
  const collection = features(parks);
  map.getSource("parks").setData(collection);
  const sorted = parks.slice().sort((a, b) => (b.peak_occupancy_rate || 0) - (a.peak_occupancy_rate || 0));
  $("side-title").textContent = "Parcs de stationnement — mois";
  $("chart").innerHTML = "<table><tr><th>parc</th><th>moyenne</th><th>pointe</th><th>heures saturées</th></tr>"
    + sorted.map((p) => `<tr><td>${esc(p.facility_name || p.facility_id)}</td><td>${fmt((p.mean_occupancy_rate || 0) * 100)} %</td><td>${fmt((p.peak_occupancy_rate || 0) * 100)} %</td><td>${fmt(p.hours_saturated)}</td></tr>`).join("")
    + "</table>";
  $("legend").innerHTML = "<div class='legend-row'><span class='swatch' style='background:#1a9641'></span>pointe &lt; 75 %</div>"
    + "<div class='legend-row'><span class='swatch' style='background:#fdae61'></span>75 – 95 %</div>"
    + "<div class='legend-row'><span class='swatch' style='background:#d7191c'></span>≥ 95 %</div>";
  return { collection, bars: sorted.length };
}

async function showStop(stopId) {
  const [usage] = await rows("mart_stop_usage", [`month:eq:${state.month}`, `stop_id:eq:${stopId}`]);
  const next = new Date(`${state.month}T00:00:00Z`);
  next.setUTCMonth(next.getUTCMonth() + 1);
  const hours = await rows("mart_stop_activity", [`stop_id:eq:${stopId}`, `service_date:ge:${state.month}`, `service_date:lt:${next.toISOString().slice(0, 10)}`]);
  const perHour = Array.from({ length: 24 }, () => 0);
  const days = new Set(hours.map((h) => h.service_date));
  for (const h of hours) perHour[h.hour] += (h.boardings_estimated || 0) / Math.max(days.size, 1);
  const top = Math.max(1, ...perHour);
  const bars = perHour.map((v, hr) => `<rect x="${hr * 15}" y="${(60 - (v / top) * 55).toFixed(1)}" width="13" height="${((v / top) * 55).toFixed(1)}" fill="#1f5fa8"><title>${hr} h : ${fmt(v, 1)}</title></rect>`).join("");
  $("stop").innerHTML = `<h2>${esc(usage ? usage.stop_name : stopId)}</h2>`
    + (usage ? `<p>${fmt(usage.mean_daily_boardings, 1)} montées et ${fmt(usage.mean_daily_alightings, 1)} descentes par jour en moyenne (${usage.service_dates} jours)${usage.is_rarely_used ? " — <strong>arrêt peu utilisé</strong>" : ""}.</p>` : "<p class='muted'>pas de fréquentation publiée ce mois</p>")
    + `<svg id="stop-hours" viewBox="0 0 360 70" width="100%" role="img" aria-label="montées par heure">${bars}</svg><p class='muted'>Montées estimées par heure (moyenne des jours du mois).</p>`;
  document.body.dataset.stop = stopId;
}

async function render() {
  writeHash();
  say("chargement…");
  $("line").disabled = $("direction").disabled = state.view !== "load";
  const parking = state.view === "parking";
  for (const layer of ["segments", "stops"]) map.setLayoutProperty(layer, "visibility", parking ? "none" : "visible");
  map.setLayoutProperty("parks", "visibility", parking ? "visible" : "none");
  try {
    const drawn = state.view === "speed" ? await drawSpeed() : state.view === "parking" ? await drawParking() : await drawLoad();
    const stops = state.view === "parking" ? { features: [] } : features(await rows("mart_stop_usage", [`month:eq:${state.month}`]));
    if (state.view !== "parking") map.getSource("stops").setData(stops);
    const box = bounds(drawn.collection.features.length ? drawn.collection : stops);
    if (box) map.fitBounds(box, { padding: 40, animate: false, maxZoom: 16 });
    shown += 1;
    document.body.dataset.rendered = JSON.stringify({ view: state.view, line: state.line, features: drawn.collection.features.length, bars: drawn.bars, renders: shown });
    say(`${drawn.collection.features.length} objets sur la carte`);
  } catch (error) {
    say(`erreur : ${error.message}`);
    document.body.dataset.error = error.message;
  }
}

function basemapStyle(config) {
  if (config.basemap_style) return config.basemap_style;
  return { version: 8, sources: {}, layers: [{ id: "fond", type: "background", paint: { "background-color": "#f4f4f1" } }] };
}

async function start() {
  readHash();
  token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) { showLogin(); return; }
  $("login").hidden = true;
  $("app").hidden = false;
  const config = await (await fetch("/explore/config.json")).json();
  const publication = await api("/v1/publication");
  $("publication").textContent = `publication ${Object.values(publication.groups || {}).map((g) => g.publication_id).filter((v, i, a) => a.indexOf(v) === i).join(", ")}`;
  const lines = [...new Set((await rows("dim_lines", [])).map((l) => l.route_short_name))].sort((a, b) => a.localeCompare(b, "fr", { numeric: true }));
  $("line").innerHTML = lines.map((l) => `<option>${esc(l)}</option>`).join("");
  const [last] = (await api("/v1/marts/mart_segment_loads/rows", [["limit", "1"], ["order_by", "-month"]])).rows;
  const [first] = (await api("/v1/marts/mart_segment_loads/rows", [["limit", "1"], ["order_by", "month"]])).rows;
  const months = last ? monthRange(first.month, last.month) : [];
  $("month").innerHTML = months.map((m) => `<option value="${m}">${m.slice(0, 7)}</option>`).join("");
  if (!state.line || !lines.includes(state.line)) state.line = lines[0] || "";
  if (!state.month || !months.includes(state.month)) state.month = months[0] || "";
  for (const key of ["line", "direction", "month", "day_type", "time_band"]) $(key).value = state[key];
  document.querySelector(`input[name=view][value=${state.view}]`).checked = true;

  map = new maplibregl.Map({ container: "map", style: basemapStyle(config), center: [2.35, 46.6], zoom: 5, attributionControl: { compact: true } });
  window.citylakeMap = map;  // for the browser test (a stop's place on screen)
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  map.on("error", (event) => say(`carte : ${event.error && event.error.message}`));
  map.on("load", () => {
    map.addSource("segments", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    map.addSource("stops", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    map.addSource("parks", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
    map.addLayer({ id: "segments", type: "line", source: "segments", layout: { "line-cap": "round", "line-join": "round" }, paint: { "line-color": "#1f5fa8", "line-width": 3, "line-opacity": 0.9 } });
    map.addLayer({ id: "stops", type: "circle", source: "stops", paint: { "circle-radius": ["interpolate", ["linear"], ["sqrt", ["coalesce", ["get", "mean_daily_boardings"], 0]], 0, 2, 30, 9], "circle-color": ["case", ["get", "is_rarely_used"], "#d7191c", "#ffffff"], "circle-stroke-color": "#1c2733", "circle-stroke-width": 1 } });
    map.addLayer({ id: "parks", type: "circle", source: "parks", paint: { "circle-radius": 9, "circle-color": ["step", ["coalesce", ["get", "peak_occupancy_rate"], 0], "#1a9641", 0.75, "#fdae61", 0.95, "#d7191c"], "circle-stroke-color": "#1c2733", "circle-stroke-width": 1 } });
    map.on("click", "stops", (event) => showStop(event.features[0].properties.stop_id));
    map.on("mouseenter", "stops", () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", "stops", () => { map.getCanvas().style.cursor = ""; });
    render();
  });
  for (const key of ["line", "direction", "month", "day_type", "time_band"]) {
    $(key).addEventListener("change", () => { state[key] = $(key).value; render(); });
  }
  for (const radio of document.querySelectorAll("input[name=view]")) {
    radio.addEventListener("change", () => { state.view = radio.value; render(); });
  }
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  start();
});
start().catch((error) => { say(`erreur : ${error.message}`); document.body.dataset.error = error.message; });
