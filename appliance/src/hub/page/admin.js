// The school admin's pages (to a signed-in admin, or the box itself): a dashboard,
// the query log with each verdict explained, the policies, the school, the cache.
// No framework, no external asset; every chart is SVG drawn here. Every change goes
// through the same checked JSON API, with the session's CSRF token.
"use strict";
const T = {
  fr: {
    title: "Administration de l'école", signout: "Se déconnecter", lang: "English",
    tab_dashboard: "Tableau de bord", tab_log: "Journal des requêtes", tab_filtering: "Filtrage",
    tab_school: "École", tab_cache: "Cache", per_hour: "Requêtes par heure", last_day: "24 heures",
    last_week: "7 jours", queries: "requêtes", blocked: "bloquées", top_blocked: "Noms les plus bloqués",
    top_categories: "Catégories bloquées", top_clients: "Appareils les plus actifs",
    online_per_class: "Tablettes en ligne par classe", client: "Appareil (adresse)", name: "Nom",
    verdict: "Verdict", any: "tous", o_blocked: "bloqué", o_allowed: "autorisé",
    o_safe_search: "recherche sécurisée", o_refused: "refusé", o_bypass: "contournement", o_local: "local",
    search: "Chercher", save_policies: "Enregistrer les politiques",
    reset_policies: "Revenir au fichier de configuration", lists: "Listes",
    ut1_credit: "Listes UT1 : Fabrice Prigent, Université Toulouse Capitole (CC BY-SA 4.0).",
    import: "Importer un fichier CSV", first_line: "Première ligne :", csv_file: "Fichier CSV", preview: "Aperçu",
    import_button: "Importer", classes: "Classes", teachers: "Enseignants", login: "Identifiant",
    password: "Mot de passe", save: "Enregistrer", pupils: "Élèves", tablets: "Tablettes",
    tablet_name: "Nom de la tablette", class: "Classe", new_code: "Code d'inscription",
    code_help: "Scannez ce code (ou tapez-le) sur la tablette à inscrire ; il sert une fois, pendant 7 jours.",
    headwind: "Tablette Headwind MDM",
    wifi_in_qr: "Le code fait rejoindre à la tablette le Wi-Fi du chariot :",
    provisioning_help: "Sur la tablette réinitialisée, touchez six fois l'écran d'accueil, puis scannez ce code : elle installe l'agent depuis le boîtier et s'inscrit. Il sert une fois, pendant 7 jours.",
    c_queries: "Requêtes (24 h)", c_blocked: "Bloquées (24 h)", c_online: "Tablettes en ligne",
    c_uplink: "Liaison internet", c_sync: "Console centrale", c_cache: "Cache",
    up: "en service", down: "coupée", unknown: "inconnue", connected: "connectée",
    standalone: "sans console", connecting: "connexion…", paused: "en pause (pas d'internet)",
    backoff: "nouvel essai bientôt", waiting: "{n} événement(s) en attente", none_yet: "rien pour l'instant",
    at: "Heure", why: "Pourquoi ?", allow_for: "Autoriser pour « {p} »", deny_for: "Bloquer pour « {p} »",
    done: "Fait : la règle s'applique dès maintenant.", from_central: "Politiques signées par la console centrale : lecture seule ici. Modifiez-les depuis la console.",
    from_local: "Politiques modifiées sur cette page (par {by}, le {at}).",
    from_file: "Politiques du fichier de configuration. Vos modifications ici seront enregistrées sur la box.",
    default_policy: "politique par défaut", clients: "Appareils concernés (adresses ou réseaux, un par ligne)",
    categories: "Catégories bloquées", allow: "Toujours autorisés (un nom par ligne)",
    deny: "Toujours bloqués (un nom par ligne)", safe_search: "Recherche sécurisée (Google, Bing, DuckDuckGo…)",
    youtube: "YouTube", y_off: "sans restriction", y_moderate: "restreint modéré", y_strict: "restreint strict",
    schedule: "Horaires", no_schedule: "Toujours cette politique.", saved: "Enregistré",
    entries: "{n} noms", list_file: "Fichier", list_modified: "Modifié le", listed: "{n} noms listés en tout",
    delete: "Supprimer", confirm_delete: "Supprimer {what} ?", revoke: "Révoquer", pupil: "Élève",
    adds: "{a} ajout(s), {u} modification(s), {r} ligne(s)", nothing_imported: "Rien n'a été importé.",
    preview_of: "Aperçu (rien n'est encore enregistré) :", imported: "Importé :",
    online: "en ligne", offline: "hors ligne", item: "Élément", version: "Version", size: "Taille",
    state: "État", present: "présent", downloading: "téléchargement", missing: "absent", failed: "échec",
    used: "{used} utilisés sur {quota}", pinned: "préchargé", never: "jamais",
    sentence: "{days} {hours} : « {p} »", from_to: "de {from} à {to}", all_day: "toute la journée",
    rule_days: "Jours (lun-ven, sam, …)", rule_from: "De", rule_to: "À", rule_policy: "alors la politique",
    add_rule: "Ajouter un horaire", remove_rule: "Retirer",
    no_tablet: "aucune tablette",
  },
  en: {
    title: "School administration", signout: "Sign out", lang: "Français",
    tab_dashboard: "Dashboard", tab_log: "Query log", tab_filtering: "Filtering",
    tab_school: "School", tab_cache: "Cache", per_hour: "Queries per hour", last_day: "24 hours",
    last_week: "7 days", queries: "queries", blocked: "blocked", top_blocked: "Most blocked names",
    top_categories: "Blocked categories", top_clients: "Most active devices",
    online_per_class: "Tablets online per class", client: "Device (address)", name: "Name",
    verdict: "Verdict", any: "any", o_blocked: "blocked", o_allowed: "allowed",
    o_safe_search: "safe search", o_refused: "refused", o_bypass: "bypass", o_local: "local",
    search: "Search", save_policies: "Save the policies",
    reset_policies: "Back to the configuration file", lists: "Lists",
    ut1_credit: "UT1 lists: Fabrice Prigent, Université Toulouse Capitole (CC BY-SA 4.0).",
    import: "Import a CSV file", first_line: "First line:", csv_file: "CSV file", preview: "Preview",
    import_button: "Import", classes: "Classes", teachers: "Teachers", login: "Login",
    password: "Password", save: "Save", pupils: "Pupils", tablets: "Tablets",
    tablet_name: "Tablet name", class: "Class", new_code: "Enrolment code",
    code_help: "Scan this code (or type it) on the tablet to enrol; it works once, for 7 days.",
    headwind: "Headwind MDM tablet",
    wifi_in_qr: "The code has the tablet join the cart's Wi-Fi:",
    provisioning_help: "On the factory-reset tablet, tap the welcome screen six times, then scan this code: it installs the agent from the box and enrols. It works once, for 7 days.",
    c_queries: "Queries (24 h)", c_blocked: "Blocked (24 h)", c_online: "Tablets online",
    c_uplink: "Internet link", c_sync: "Central console", c_cache: "Cache",
    up: "up", down: "down", unknown: "unknown", connected: "connected",
    standalone: "no console", connecting: "connecting…", paused: "paused (no internet)",
    backoff: "retrying soon", waiting: "{n} event(s) waiting", none_yet: "nothing yet",
    at: "Time", why: "Why?", allow_for: "Allow for “{p}”", deny_for: "Block for “{p}”",
    done: "Done: the rule applies now.", from_central: "Policies signed by the central console: read-only here. Change them on the console.",
    from_local: "Policies edited on this page (by {by}, on {at}).",
    from_file: "The configuration file's policies. Your changes here are saved on the box.",
    default_policy: "default policy", clients: "Devices (addresses or networks, one per line)",
    categories: "Blocked categories", allow: "Always allowed (one name per line)",
    deny: "Always blocked (one name per line)", safe_search: "Safe search (Google, Bing, DuckDuckGo…)",
    youtube: "YouTube", y_off: "unrestricted", y_moderate: "moderate restricted", y_strict: "strict restricted",
    schedule: "Schedule", no_schedule: "Always this policy.", saved: "Saved",
    entries: "{n} names", list_file: "File", list_modified: "Changed on", listed: "{n} names listed in all",
    delete: "Delete", confirm_delete: "Delete {what}?", revoke: "Revoke", pupil: "Pupil",
    adds: "{a} added, {u} changed, {r} row(s)", nothing_imported: "Nothing was imported.",
    preview_of: "Preview (nothing saved yet):", imported: "Imported:",
    online: "online", offline: "offline", item: "Item", version: "Version", size: "Size",
    state: "State", present: "present", downloading: "downloading", missing: "missing", failed: "failed",
    used: "{used} used of {quota}", pinned: "prefetched", never: "never",
    sentence: "{days} {hours}: “{p}”", from_to: "from {from} to {to}", all_day: "all day",
    rule_days: "Days (mon-fri, sat, …)", rule_from: "From", rule_to: "To", rule_policy: "then the policy",
    add_rule: "Add a time rule", remove_rule: "Remove",
    no_tablet: "no tablet",
  },
};
const DAYS = { fr: { mon: "lundi", tue: "mardi", wed: "mercredi", thu: "jeudi", fri: "vendredi", sat: "samedi", sun: "dimanche" },
  en: { mon: "Monday", tue: "Tuesday", wed: "Wednesday", thu: "Thursday", fri: "Friday", sat: "Saturday", sun: "Sunday" } };
let lang = localStorage.getItem("lang") || (navigator.language || "fr").slice(0, 2);
if (!T[lang]) lang = "fr";
const t = (k, vars) => (T[lang][k] || k).replace(/\{(\w+)\}/g, (_, v) => (vars && v in vars ? vars[v] : ""));
const $ = (id) => document.getElementById(id);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
const cell = (row, text) => row.appendChild(el("td", text));
const button = (label, onclick, cls) => { const b = el("button", label, cls); b.type = "button"; b.onclick = onclick; return b; };
const fmtTime = (unix) => new Date(unix * 1000).toLocaleString(lang === "fr" ? "fr-FR" : "en-GB", { dateStyle: "short", timeStyle: "short" });
const fmtBytes = (n) => { const u = ["o", "Kio", "Mio", "Gio", "Tio"]; let i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return `${n.toFixed(i ? 1 : 0)} ${u[i]}`; };
const fmtNum = (n) => Number(n).toLocaleString(lang === "fr" ? "fr-FR" : "en-GB");
let csrf = null;
let range = 24;
let policyState = null;
const headers = (extra) => Object.assign(csrf ? { "x-csrf-token": csrf } : {}, extra || {});

async function api(path, options) {
  const r = await fetch(path, Object.assign({ headers: headers((options || {}).json ? { "content-type": "application/json" } : {}) }, options));
  if (r.status === 401) { location.href = "/classe"; throw new Error("sign in"); }
  if (!r.ok) { const text = await r.text(); throw new Error(text.trim() || r.statusText); }
  return r.status === 204 ? null : (r.headers.get("content-type") || "").includes("json") ? r.json() : r.text();
}
const send = (path, method, body) => api(path, { method, json: true, body: JSON.stringify(body) });
function showError(e) { $("error").textContent = e ? String(e.message || e) : ""; }

function translate() {
  document.documentElement.lang = lang;
  for (const n of document.querySelectorAll("[data-t]")) n.textContent = t(n.dataset.t);
  $("lang").textContent = t("lang");
  document.title = `Cartable — ${t("title")}`;
}

// ---- tabs ----
const loaders = { dashboard: loadDashboard, log: loadLog, filtering: loadPolicies, school: loadSchool, cache: loadCache };
function show(tab) {
  if (!loaders[tab]) tab = "dashboard";
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== tab;
  if (location.hash !== `#${tab}`) history.replaceState(null, "", `#${tab}`);
  showError(null);
  loaders[tab]().catch(showError);
}

// ---- dashboard ----
function card(label, value, sub, warn) {
  const c = el("div", undefined, warn ? "card warn" : "card");
  c.appendChild(el("div", label, "muted")); c.appendChild(el("div", value, "value"));
  if (sub) c.appendChild(el("div", sub, "muted"));
  return c;
}

function chart(hours, width) {
  const ns = "http://www.w3.org/2000/svg";
  const W = Math.max(300, width), H = 220, pad = 36;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("role", "img");
  const total = hours.reduce((a, h) => a + h.queries, 0), blocked = hours.reduce((a, h) => a + h.blocked, 0);
  svg.setAttribute("aria-label", `${t("per_hour")}: ${fmtNum(total)} ${t("queries")}, ${fmtNum(blocked)} ${t("blocked")}`);
  const max = Math.max(1, ...hours.map((h) => h.queries));
  const bw = (W - pad * 2) / hours.length;
  const y = (v) => H - pad - (v / max) * (H - pad * 2);
  const rect = (x, v, cls, label) => {
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", x.toFixed(1)); r.setAttribute("width", Math.max(1, bw - 1).toFixed(1));
    r.setAttribute("y", y(v).toFixed(1)); r.setAttribute("height", (H - pad - y(v)).toFixed(1));
    r.setAttribute("class", cls);
    const title = document.createElementNS(ns, "title"); title.textContent = label; r.appendChild(title);
    svg.appendChild(r);
  };
  const text = (x, yy, s, anchor) => { const e = document.createElementNS(ns, "text"); e.setAttribute("x", x); e.setAttribute("y", yy); e.setAttribute("text-anchor", anchor || "middle"); e.textContent = s; svg.appendChild(e); };
  hours.forEach((h, i) => {
    const x = pad + i * bw;
    const when = fmtTime(h.hour);
    rect(x, h.queries, "bar-q", `${when} — ${fmtNum(h.queries)} ${t("queries")}`);
    rect(x, h.blocked, "bar-b", `${when} — ${fmtNum(h.blocked)} ${t("blocked")}`);
    const d = new Date(h.hour * 1000);
    const every = hours.length > 48 ? 24 : 3;
    if (d.getHours() % every === 0) {
      const label = hours.length > 48 ? d.toLocaleDateString(lang === "fr" ? "fr-FR" : "en-GB", { weekday: "short", day: "numeric" }) : `${d.getHours()}h`;
      text(x + bw / 2, H - 8, label);
    }
  });
  text(pad - 4, pad, fmtNum(max), "end"); text(pad - 4, H - pad, "0", "end");
  return svg;
}

function fillList(id, rows) {
  const ol = $(id); ol.innerHTML = "";
  if (!rows.length) ol.appendChild(el("li", t("none_yet"), "muted"));
  for (const [label, n] of rows) ol.appendChild(el("li", `${label} — ${fmtNum(n)}`));
}

async function loadDashboard() {
  const [hourly, day, stats, status, school] = await Promise.all([
    api(`/api/v1/filter/hourly?hours=${range}`), range === 24 ? null : api("/api/v1/filter/hourly?hours=24"),
    api("/api/v1/filter/stats"), api("/api/v1/status"), api("/api/v1/admin/school")]);
  const last = (day || hourly).hours;
  const q = last.reduce((a, h) => a + h.queries, 0), b = last.reduce((a, h) => a + h.blocked, 0);
  const online = school.devices.filter((d) => d.connected).length;
  const cards = $("cards"); cards.innerHTML = "";
  cards.appendChild(card(t("c_queries"), fmtNum(q)));
  cards.appendChild(card(t("c_blocked"), fmtNum(b), q ? `${((100 * b) / q).toFixed(1)} %` : ""));
  cards.appendChild(card(t("c_online"), `${online} / ${school.devices.length}`));
  cards.appendChild(card(t("c_uplink"), t(status.uplink.state), status.uplink.interface || "", status.uplink.state !== "up"));
  const sync = status.sync;
  cards.appendChild(card(t("c_sync"), t(sync.link), t("waiting", { n: fmtNum(sync.backlog.rows) }), sync.link !== "connected" && sync.link !== "standalone"));
  const c = status.cache;
  cards.appendChild(card(t("c_cache"), `${c.present} / ${c.items}`, t("used", { used: fmtBytes(c.bytes_used), quota: fmtBytes(c.quota_bytes) }), c.failing > 0));
  for (const r of document.querySelectorAll(".range")) r.setAttribute("aria-pressed", String(Number(r.dataset.range) === range));
  const box = $("chart"); box.innerHTML = ""; box.appendChild(chart(hourly.hours, box.clientWidth || 960));
  fillList("top-blocked", stats.top_blocked.map((n) => [n.name, n.count]));
  const cats = Object.entries(hourly.blocked_by_category).sort((x, y) => y[1] - x[1]).slice(0, 10);
  fillList("top-categories", cats);
  fillList("top-clients", stats.clients.slice(0, 10).map((c) => [c.client, c.queries]));
  const className = (d) => (school.classes.find((c) => c.id === d.class_id) || { name: "—" }).name;
  const perClass = {};
  for (const d of school.devices) { const k = className(d); perClass[k] = perClass[k] || [0, 0]; perClass[k][1]++; if (d.connected) perClass[k][0]++; }
  const table = $("online"); table.innerHTML = "";
  for (const [k, [on, all]] of Object.entries(perClass).sort()) { const tr = table.insertRow(); cell(tr, k); cell(tr, `${on} / ${all}`); }
  if (!school.devices.length) cell(table.insertRow(), t("no_tablet"));
}

// ---- query log ----
async function loadLog() {
  if (!policyState) policyState = await api("/api/v1/filter/policies");
  const p = new URLSearchParams({ limit: "200" });
  if ($("log-client").value.trim()) p.set("client", $("log-client").value.trim());
  if ($("log-name").value.trim()) p.set("name", $("log-name").value.trim());
  if ($("log-outcome").value) p.set("outcome", $("log-outcome").value);
  const lines = await api(`/api/v1/filter/log?${p}`);
  const table = $("log-lines"); table.innerHTML = "";
  const head = table.createTHead().insertRow();
  for (const k of ["at", "client", "name", "verdict", ""]) head.appendChild(el("th", k ? t(k) : ""));
  const body = table.createTBody();
  if (!lines.length) cell(body.insertRow(), t("none_yet"));
  for (const l of lines) {
    const tr = body.insertRow();
    tr.className = "line";
    cell(tr, fmtTime(l.at)); cell(tr, l.client); cell(tr, l.name);
    cell(tr, t(`o_${l.outcome}`) + (l.category ? ` (${l.category})` : "")).className = `v-${l.outcome}`;
    const why = button(t("why"), () => explain(l, tr, why));
    cell(tr, "").appendChild(why);
  }
}

async function explain(line, tr, why) {
  why.disabled = true;
  const p = new URLSearchParams({ name: line.name, client: line.client, at: String(line.at) });
  const a = await api(`/api/v1/filter/test?${p}`).catch((e) => { showError(e); return null; });
  why.disabled = false;
  if (!a) return;
  const row = tr.parentNode.insertRow(tr.sectionRowIndex + 1);
  const td = row.insertCell(); td.colSpan = 5;
  const box = td.appendChild(el("div", undefined, "why"));
  box.appendChild(el("p", a.explanation));
  if (policyState && policyState.editable) {
    const result = el("span", "", "muted");
    const set = (list) => send(`/api/v1/filter/policies/${encodeURIComponent(a.policy)}/names`, "POST", { name: line.name, list })
      .then(() => { result.textContent = t("done"); policyState = null; }).catch(showError);
    box.appendChild(button(t("allow_for", { p: a.policy }), () => set("allow"), "allow"));
    box.appendChild(button(t("deny_for", { p: a.policy }), () => set("deny"), "danger deny"));
    box.appendChild(result);
  } else {
    box.appendChild(el("p", t("from_central"), "muted"));
  }
}

// ---- policies ----
const lines = (text) => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
function sentence(rule) {
  const days = rule.days.map((d) => d.split(",").map((x) => x.split("-").map((y) => DAYS[lang][y] || y).join(lang === "fr" ? " au " : " to ")).join(", ")).join(", ");
  const hours = rule.from || rule.to ? t("from_to", { from: rule.from || "00:00", to: rule.to || "24:00" }) : t("all_day");
  return t("sentence", { days, hours, p: rule.policy });
}

// A schedule rule as its row in the form says it; empty times are left out.
function readRule(row) {
  const v = (k) => row.querySelector(`[data-rule="${k}"]`).value;
  const r = { days: lines(v("days")), policy: v("policy") };
  if (v("from")) r.from = v("from");
  if (v("to")) r.to = v("to");
  return r;
}

// One editable rule: days, hours, the policy then, and the rule said as a sentence.
function ruleRow(r, names, editable) {
  const row = el("div", undefined, "rule");
  const field = (key, node) => { const l = el("label"); l.appendChild(el("span", t(`rule_${key}`))); node.dataset.rule = key; node.disabled = !editable; l.appendChild(node); row.appendChild(l); return node; };
  const input = (type, value) => { const i = el("input"); i.type = type; i.value = value || ""; return i; };
  field("days", input("text", (r.days || []).join(", ")));
  field("from", input("time", r.from)); field("to", input("time", r.to));
  const sel = el("select");
  for (const n of names) { const o = el("option", n); o.value = n; sel.appendChild(o); }
  field("policy", sel).value = r.policy;
  const said = row.appendChild(el("p", sentence(r), "muted said"));
  row.addEventListener("input", () => { said.textContent = sentence(readRule(row)); });
  if (editable) row.appendChild(button(t("remove_rule"), () => row.remove(), "danger"));
  return row;
}

function policyForm(p, categories, editable, names) {
  const f = el("fieldset"); f.dataset.name = p.name;
  f.appendChild(el("legend", p.name + (p.default ? ` — ${t("default_policy")}` : "")));
  const area = (key, value) => { const l = el("label"); l.appendChild(el("span", t(key))); const a = el("textarea"); a.rows = 3; a.cols = 40; a.value = value.join("\n"); a.dataset.key = key; a.disabled = !editable; l.appendChild(el("br")); l.appendChild(a); f.appendChild(l); };
  area("clients", p.clients || []);
  f.appendChild(el("h4", t("categories")));
  const grid = f.appendChild(el("div", undefined, "cats"));
  const blocked = new Set(p.block || []);
  for (const c of categories) {
    if (c.kind === "white") continue;
    const l = el("label"); const box = el("input"); box.type = "checkbox"; box.value = c.name; box.disabled = !editable;
    box.checked = blocked.has(c.name) || c.aliases.some((a) => blocked.has(a));
    l.appendChild(box);
    const txt = el("span", `${c.titles[lang] || c.titles.fr || c.name} (${c.name}) — ${t("entries", { n: fmtNum(c.entries) })}`);
    const desc = c.descriptions[lang] || c.descriptions.fr; if (desc) txt.appendChild(el("small", desc));
    l.appendChild(txt); grid.appendChild(l);
  }
  area("allow", p.allow || []); area("deny", p.deny || []);
  const ss = el("label"); const sb = el("input"); sb.type = "checkbox"; sb.checked = p.safe_search !== false; sb.dataset.key = "safe_search"; sb.disabled = !editable;
  ss.appendChild(sb); ss.appendChild(document.createTextNode(` ${t("safe_search")}`)); f.appendChild(ss);
  const yl = el("label", `${t("youtube")} `); const ys = el("select"); ys.dataset.key = "youtube"; ys.disabled = !editable;
  for (const m of ["off", "moderate", "strict"]) { const o = el("option", t(`y_${m}`)); o.value = m; ys.appendChild(o); }
  ys.value = p.youtube || "off"; yl.appendChild(ys); f.appendChild(yl);
  f.appendChild(el("h4", t("schedule")));
  if (!(p.schedule || []).length) f.appendChild(el("p", t("no_schedule"), "muted"));
  const rules = f.appendChild(el("div", undefined, "rules"));
  for (const r of p.schedule || []) rules.appendChild(ruleRow(r, names, editable));
  const other = names.find((n) => n !== p.name) || p.name;
  if (editable) f.appendChild(button(t("add_rule"), () => rules.appendChild(ruleRow({ days: ["mon-fri"], from: "18:00", to: "07:30", policy: other }, names, true)), "add-rule"));
  return f;
}

function readPolicies() {
  return policyState.policies.map((p) => {
    const f = document.querySelector(`#policies fieldset[data-name="${CSS.escape(p.name)}"]`);
    const val = (k) => f.querySelector(`[data-key="${k}"]`);
    const known = new Set(policyState.categories.map((c) => c.name));
    const kept = (p.block || []).filter((b) => !known.has(b) && !policyState.categories.some((c) => c.aliases.includes(b)));
    const block = kept.concat([...f.querySelectorAll(".cats input:checked")].map((b) => b.value));
    return Object.assign({}, p, { clients: lines(val("clients").value), block, allow: lines(val("allow").value),
      deny: lines(val("deny").value), safe_search: val("safe_search").checked, youtube: val("youtube").value,
      schedule: [...f.querySelectorAll(".rules .rule")].map(readRule) });
  });
}

async function loadPolicies() {
  policyState = await api("/api/v1/filter/policies");
  const s = policyState;
  const banner = $("policy-source");
  banner.className = s.editable ? "banner" : "banner locked";
  banner.textContent = s.source === "central" ? t("from_central") : s.source === "local" && s.edited
    ? t("from_local", { by: s.edited.by, at: fmtTime(s.edited.at) }) : t("from_file");
  const box = $("policies"); box.innerHTML = "";
  const names = s.policies.map((p) => p.name);
  for (const p of s.policies) box.appendChild(policyForm(p, s.categories, s.editable, names));
  $("save-policies").disabled = !s.editable;
  $("reset-policies").disabled = !s.editable || s.source !== "local";
  $("lists-total").textContent = t("listed", { n: fmtNum(s.listed_names) });
  const table = $("lists"); table.innerHTML = "";
  const head = table.createTHead().insertRow();
  for (const k of ["class", "list_file", "list_modified"]) head.appendChild(el("th", k === "class" ? "" : t(k)));
  for (const l of s.lists) { const tr = table.insertRow(); cell(tr, l.category); cell(tr, l.path); cell(tr, l.modified ? fmtTime(l.modified) : "—"); }
}

// ---- school ----
async function remove(kind, id, name) {
  if (!confirm(t("confirm_delete", { what: name }))) return;
  await api(`/api/v1/admin/${kind}/${id}`, { method: "DELETE" }).catch(showError);
  await loadSchool();
}

async function loadSchool() {
  const school = await api("/api/v1/admin/school");
  const classes = $("classes"); classes.innerHTML = "";
  const select = $("code-class"); select.innerHTML = "<option value=''>—</option>";
  for (const c of school.classes) {
    const tr = classes.insertRow();
    cell(tr, c.name); cell(tr, c.level);
    cell(tr, "").appendChild(button(t("delete"), () => remove("classes", c.id, c.name), "danger"));
    const o = el("option", c.name); o.value = c.name; select.appendChild(o);
  }
  const teachers = $("teachers"); teachers.innerHTML = "";
  for (const x of school.teachers) {
    const tr = teachers.insertRow();
    cell(tr, x.login); cell(tr, x.name); cell(tr, x.classes); cell(tr, x.has_password ? "✓" : "—");
    cell(tr, "").appendChild(button(t("delete"), () => remove("teachers", x.id, x.login), "danger"));
  }
  const pupils = $("pupils"); pupils.innerHTML = "";
  for (const p of school.pupils) {
    const tr = pupils.insertRow();
    cell(tr, `${p.first_name} ${p.last_name}`); cell(tr, p.class);
    cell(tr, "").appendChild(button(t("delete"), () => remove("pupils", p.id, p.first_name), "danger"));
  }
  const devices = $("devices"); devices.innerHTML = "";
  for (const d of school.devices) {
    const tr = devices.insertRow();
    const cls = school.classes.find((c) => c.id === d.class_id);
    cell(tr, d.name); cell(tr, d.connected ? t("online") : t("offline")); cell(tr, cls ? cls.name : "—");
    const choose = el("select"); choose.setAttribute("aria-label", t("pupil"));
    const none = el("option", "—"); none.value = ""; choose.appendChild(none);
    for (const p of school.pupils.filter((p) => cls && p.class === cls.name)) {
      const o = el("option", `${p.first_name} ${p.last_name}`); o.value = p.id;
      o.selected = !!d.pupil && d.pupil[0] === p.id && !d.pupil_session; choose.appendChild(o);
    }
    choose.onchange = () => send(`/api/v1/admin/devices/${d.id}/pupil`, "POST", { pupil: choose.value ? Number(choose.value) : null }).catch(showError);
    cell(tr, "").appendChild(choose);
    cell(tr, "").appendChild(button(t("revoke"), async () => {
      if (!confirm(t("confirm_delete", { what: d.name }))) return;
      await api(`/api/v1/admin/devices/${d.id}/revoke`, { method: "POST" }).catch(showError); loadSchool();
    }, "danger"));
  }
}

async function importCsv(preview) {
  const out = $("import-result"); out.innerHTML = "";
  try {
    const r = await api(`/api/v1/admin/import${preview ? "?preview=true" : ""}`, { method: "POST", headers: headers({ "content-type": "text/csv" }), body: $("csv").value });
    out.appendChild(el("p", `${t(preview ? "preview_of" : "imported")} ${t("adds", { a: r.added, u: r.updated, r: r.rows })}`));
    const ul = out.appendChild(el("ul"));
    for (const c of r.changes) ul.appendChild(el("li", c));
    if (!preview) loadSchool();
  } catch (e) {
    out.appendChild(el("pre", `${e.message}`, "error"));
  }
}

// ---- cache ----
async function loadCache() {
  const [status, items] = await Promise.all([api("/api/v1/status"), api("/api/v1/cache")]);
  const c = status.cache;
  $("cache-usage").textContent = t("used", { used: fmtBytes(c.bytes_used), quota: fmtBytes(c.quota_bytes) });
  $("cache-meter").value = c.quota_bytes ? c.bytes_used / c.quota_bytes : 0;
  const table = $("cache-items"); table.innerHTML = "";
  const head = table.createTHead().insertRow();
  for (const k of ["item", "version", "size", "state"]) head.appendChild(el("th", t(k)));
  for (const i of items) {
    const tr = table.insertRow();
    cell(tr, i.id + (i.pinned ? ` (${t("pinned")})` : "")); cell(tr, i.version); cell(tr, fmtBytes(i.size));
    let state = t(i.state);
    if (i.state === "downloading" && i.size) state += ` ${Math.floor((100 * i.bytes) / i.size)} %`;
    if (i.state === "failed" && i.error) state += ` — ${i.error}`;
    cell(tr, state).className = `state-${i.state}`;
  }
}

// ---- start ----
$("lang").onclick = () => { lang = lang === "fr" ? "en" : "fr"; localStorage.setItem("lang", lang); translate(); show(location.hash.slice(1)); };
for (const b of document.querySelectorAll("#tabs button")) b.onclick = () => show(b.dataset.tab);
for (const r of document.querySelectorAll(".range")) r.onclick = () => { range = Number(r.dataset.range); loadDashboard().catch(showError); };
$("log-search").onsubmit = (e) => { e.preventDefault(); loadLog().catch(showError); };
$("save-policies").onclick = () => {
  $("policy-result").textContent = "";
  send("/api/v1/filter/policies", "PUT", { policies: readPolicies() })
    .then(() => { $("policy-result").textContent = t("saved"); return loadPolicies(); }).catch(showError);
};
$("reset-policies").onclick = () => api("/api/v1/filter/policies", { method: "DELETE" }).then(loadPolicies).catch(showError);
$("csv-file").onchange = async (e) => { const f = e.target.files[0]; if (f) $("csv").value = await f.text(); };
$("preview").onclick = () => importCsv(true);
$("import").onclick = () => importCsv(false);
$("set-password").onclick = async () => {
  $("pw-result").textContent = "";
  try {
    await send(`/api/v1/admin/teachers/${encodeURIComponent($("pw-login").value)}/password`, "POST", { password: $("pw-password").value });
    $("pw-result").textContent = "✓"; $("pw-password").value = ""; loadSchool();
  } catch (e) { $("pw-result").textContent = e.message; }
};
$("new-code").onclick = async () => {
  try {
    const r = await send("/api/v1/admin/enrolment-codes", "POST", { name: $("code-name").value, class: $("code-class").value || null, headwind: $("code-headwind").checked });
    $("code").textContent = r.code;
    $("code-qr").src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(r.qr)}`;
    $("code-qr").alt = r.provisioning ? t("headwind") : r.qr_payload;
    $("code-help").textContent = t(r.provisioning ? "provisioning_help" : "code_help") + (r.wifi ? ` ${t("wifi_in_qr")} ${r.wifi}.` : "");
    $("code-box").hidden = false;
    loadSchool();
  } catch (e) { showError(e); }
};
$("signout").onclick = () => api("/api/v1/logout", { method: "POST" }).finally(() => { location.href = "/classe"; });
translate();
fetch("/api/v1/session").then((r) => (r.ok ? r.json() : null)).then((s) => {
  if (s && s.role === "admin") { csrf = s.csrf; $("signout").hidden = false; }
  show(location.hash.slice(1));
});
