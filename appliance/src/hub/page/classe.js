// The teacher's page: sign in, pick a class, drive its tablets, take attendance.
// No framework, no external asset: the box serves everything, offline.
"use strict";
const T = {
  fr: {
    title: "Ma classe", signout: "Se déconnecter", signin: "Connexion", login: "Identifiant",
    password: "Mot de passe", signin_button: "Se connecter", class: "Classe",
    target_all: "Commandes pour toute la classe (touchez des tablettes pour en choisir)",
    target_some: "Commandes pour {n} tablette(s) choisie(s)",
    lock: "Verrouiller", unlock: "Déverrouiller", mute: "Couper le son", unmute: "Remettre le son",
    camera_off: "Couper la caméra", camera_on: "Rétablir la caméra", internet_off: "Couper internet",
    internet_on: "Rétablir internet", allow_list: "Sites autorisés seulement…",
    launch_app: "Ouvrir une appli…", open_url: "Ouvrir un lien…", message: "Message…",
    wipe: "Fin de séance (effacer)", select_none: "Aucune sélection", attendance: "Appel",
    save_attendance: "Enregistrer l'appel", saved: "Appel enregistré", connected: "connectée",
    offline: "hors ligne", locked: "verrouillée", unlocked: "libre", muted: "son coupé",
    no_internet: "sans internet", allow_only: "sites choisis", battery: "batterie",
    pending: "en attente…", live: "en direct", bad_signin: "Identifiant ou mot de passe incorrect",
    too_many: "Trop d'essais : attendez 15 minutes", ask_url: "Adresse du lien :",
    ask_app: "Nom de l'appli (paquet) :", ask_message: "Message :",
    ask_domains: "Sites autorisés (séparés par des espaces) :", no_pupil: "(pas d'élève)",
    confirm_wipe: "Effacer la session des élèves sur ces tablettes ?", lang: "English",
    share: "Partager un document…", cards: "Cartes QR des élèves", group: "Groupe", whole_class: "Toute la classe",
    screen_time: "Temps d'écran", minutes: "Minutes par jour (0 : sans limite)",
    hours: "Heures permises", save: "Enregistrer", saved_rule: "Règle enregistrée",
    days: "Jours", mon: "lun", tue: "mar", wed: "mer", thu: "jeu", fri: "ven", sat: "sam", sun: "dim",
    no_days: "Choisissez au moins un jour",
    progress: "{done}/{total} tablettes ont exécuté « {what} »", missing: "En attente : {names}",
    empty_class: "Aucune tablette dans cette classe : l'administrateur de l'école en inscrit depuis sa page.",
    groups: "Groupes", groups_help: "Cochez des élèves et nommez le groupe : il sert ensuite de cible aux commandes et au temps d'écran.",
    group_name: "Nom du groupe", save_group: "Créer le groupe", group_saved: "Groupe enregistré",
    group_empty: "Nommez le groupe et cochez au moins un élève",
    history: "Historique de l'appel", from: "Du", to: "Au", show: "Afficher", export_csv: "Exporter (CSV)",
    day_line: "{day} : {p} présent(s), {a} absent(s)", absent_names: "absents : {names}", no_history: "Aucun appel enregistré sur cette période.",
    rule_limit: "Règle en vigueur : {minutes} minutes par jour, {days}, de {from} à {to}.",
    rule_nolimit: "Règle en vigueur : pas de limite de durée ; tablettes permises {days}, de {from} à {to}.",
    and: " et ",
  },
  en: {
    title: "My class", signout: "Sign out", signin: "Sign in", login: "Login",
    password: "Password", signin_button: "Sign in", class: "Class",
    target_all: "Commands for the whole class (tap tablets to choose some)",
    target_some: "Commands for {n} chosen tablet(s)",
    lock: "Lock", unlock: "Unlock", mute: "Mute", unmute: "Unmute",
    camera_off: "Camera off", camera_on: "Camera on", internet_off: "Internet off",
    internet_on: "Internet on", allow_list: "Allowed sites only…",
    launch_app: "Open an app…", open_url: "Open a link…", message: "Message…",
    wipe: "End of lesson (wipe)", select_none: "Clear selection", attendance: "Attendance",
    save_attendance: "Save attendance", saved: "Attendance saved", connected: "connected",
    offline: "offline", locked: "locked", unlocked: "free", muted: "muted",
    no_internet: "no internet", allow_only: "chosen sites", battery: "battery",
    pending: "waiting…", live: "live", bad_signin: "Wrong login or password",
    too_many: "Too many attempts: wait 15 minutes", ask_url: "Link address:",
    ask_app: "App name (package):", ask_message: "Message:",
    ask_domains: "Allowed sites (separated by spaces):", no_pupil: "(no pupil)",
    confirm_wipe: "Wipe the pupils' session on these tablets?", lang: "Français",
    share: "Share a document…", cards: "Pupils' QR cards", group: "Group", whole_class: "Whole class",
    screen_time: "Screen time", minutes: "Minutes a day (0: no limit)",
    hours: "Allowed hours", save: "Save", saved_rule: "Rule saved",
    days: "Days", mon: "Mon", tue: "Tue", wed: "Wed", thu: "Thu", fri: "Fri", sat: "Sat", sun: "Sun",
    no_days: "Choose at least one day",
    progress: "{done}/{total} tablets carried out “{what}”", missing: "Waiting for: {names}",
    empty_class: "No tablet in this class: the school's admin enrols them from the admin page.",
    groups: "Groups", groups_help: "Tick pupils and name the group: commands and screen time can then target it.",
    group_name: "Group name", save_group: "Create the group", group_saved: "Group saved",
    group_empty: "Name the group and tick at least one pupil",
    history: "Attendance history", from: "From", to: "To", show: "Show", export_csv: "Export (CSV)",
    day_line: "{day}: {p} present, {a} absent", absent_names: "absent: {names}", no_history: "No roll call saved in this period.",
    rule_limit: "Rule in force: {minutes} minutes a day, {days}, from {from} to {to}.",
    rule_nolimit: "Rule in force: no time limit; tablets allowed {days}, from {from} to {to}.",
    and: " and ",
  },
};
let lang = localStorage.getItem("lang") || (navigator.language || "fr").slice(0, 2);
if (!T[lang]) lang = "fr";
const t = (k) => T[lang][k] || k;
const fill = (k, vars) => t(k).replace(/\{(\w+)\}/g, (_, v) => (v in vars ? vars[v] : ""));
// A photo-free avatar: the pupil's initials on one of eight colours, from their id.
function avatar(id, name) {
  const a = document.createElement("span");
  a.className = `avatar av${Math.abs(Number(id)) % 8}`;
  a.setAttribute("aria-hidden", "true");
  a.textContent = name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => w[0].toUpperCase()).join("");
  return a;
}
const $ = (id) => document.getElementById(id);
// `sentTo`: the tablets the last command went to; only they wait for its ack.
let rollTouched = false;
let csrf = null, classId = null, tiles = [], loaded = false, selected = new Set(), sent = 0, sentTo = new Set(), sentWhat = "", events = null;

function translate() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-t]").forEach((e) => { e.textContent = t(e.dataset.t); });
  $("lang").textContent = t("lang");
  showTarget();
  render();
}
$("lang").onclick = () => { lang = lang === "fr" ? "en" : "fr"; localStorage.setItem("lang", lang); translate(); };

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (csrf && method !== "GET") headers["x-csrf-token"] = csrf;
  const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined, credentials: "same-origin" });
  if (r.status === 401) { showSignin(); throw new Error("signed out"); }
  return r;
}

function showSignin() {
  $("signin-form").hidden = false; $("class-view").hidden = true; $("signout").hidden = true;
  $("who").textContent = "";
  if (events) { events.close(); events = null; }
}

$("signin-form").onsubmit = async (ev) => {
  ev.preventDefault();
  const r = await fetch("/api/v1/login", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ login: $("login").value, password: $("password").value }) });
  if (r.status === 429) { $("signin-error").textContent = t("too_many"); return; }
  if (!r.ok) { $("signin-error").textContent = t("bad_signin"); return; }
  $("signin-error").textContent = "";
  start(await r.json());
};
$("signout").onclick = async () => { await fetch("/api/v1/logout", { method: "POST", headers: { "x-csrf-token": csrf } }); csrf = null; showSignin(); };

async function start(session) {
  // An admin's account signs in here too, and goes on to the admin's page.
  if (session.role === "admin") { location.href = "/admin"; return; }
  csrf = session.csrf;
  $("who").textContent = session.login;
  $("signin-form").hidden = true; $("class-view").hidden = false; $("signout").hidden = false;
  const classes = await (await api("GET", "/api/v1/classes")).json();
  const sel = $("class");
  sel.innerHTML = "";
  for (const c of classes) {
    const o = document.createElement("option");
    o.value = c.id; o.textContent = c.name; sel.appendChild(o);
  }
  sel.onchange = () => openClass(Number(sel.value));
  if (classes.length) openClass(classes[0].id);
}

function openClass(id) {
  rollTouched = false;
  classId = id; selected.clear(); tiles = []; loaded = false; sent = 0; sentTo = new Set(); showTarget(); render();
  $("cards").href = `/api/v1/classes/${id}/cards`;
  loadGroups();
  loadScreenTime();
  loadHistory();
  if (events) events.close();
  events = new EventSource(`/api/v1/classes/${id}/events`);
  events.addEventListener("tiles", (e) => {
    const first = !loaded;
    tiles = JSON.parse(e.data); loaded = true; $("live").textContent = "● " + t("live"); render();
    // The roll call is pre-filled from who is connected: known only now (unless the
    // teacher already ticked some).
    if (first && !rollTouched) loadPupils();
  });
  events.onerror = () => { $("live").textContent = ""; };
  loadPupils();
}

function showTarget() {
  $("target").textContent = selected.size ? t("target_some").replace("{n}", selected.size) : t("target_all");
}

// Tiles are drawn again on every update: the one that had the focus gets it back.
function focusTile(id) {
  const el = document.querySelector(`.tile[data-device="${id}"]`);
  if (el) el.focus();
}

function render() {
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.device : null;
  const box = $("tiles");
  box.innerHTML = "";
  // An empty class says so, and offers no command that would reach nobody.
  const empty = loaded && tiles.length === 0;
  $("empty").hidden = !empty;
  $("commands").hidden = empty;
  for (const d of tiles) {
    const el = document.createElement("div");
    const s = d.reported.state || {};
    el.className = "tile" + (d.connected ? "" : " offline") + (selected.has(d.id) ? " selected" : "") + (s.locked ? " locked" : "");
    el.dataset.device = d.id;
    el.dataset.locked = String(!!s.locked);
    const badges = [d.connected ? t("connected") : t("offline"), s.locked ? t("locked") : t("unlocked")];
    if (s.muted) badges.push(t("muted"));
    if (s.internet && s.internet.mode === "off") badges.push(t("no_internet"));
    if (s.internet && s.internet.mode === "allow_list") badges.push(t("allow_only"));
    if (d.reported.battery != null) badges.push(`${t("battery")} ${d.reported.battery} %`);
    if (d.reported.app) badges.push(d.reported.app);
    const pending = d.connected && sent && sentTo.has(d.id) && (d.acked == null || d.acked < sent);
    const name = document.createElement("div"); name.className = "name"; name.textContent = d.name;
    const pupil = document.createElement("div"); pupil.className = "pupil";
    if (d.pupil) pupil.append(avatar(d.pupil[0], d.pupil[1]), d.pupil[1]); else pupil.textContent = t("no_pupil");
    const b = document.createElement("div"); b.className = "badges"; b.textContent = badges.join(" · ");
    el.append(name, pupil, b);
    if (pending) { const p = document.createElement("div"); p.className = "pending"; p.textContent = t("pending"); el.appendChild(p); }
    el.onclick = () => { selected.has(d.id) ? selected.delete(d.id) : selected.add(d.id); showTarget(); render(); focusTile(d.id); };
    // Keyboard: a tile is a toggle button.
    el.tabIndex = 0; el.setAttribute("role", "button"); el.setAttribute("aria-pressed", String(selected.has(d.id)));
    el.onkeydown = (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); el.onclick(); } };
    box.appendChild(el);
  }
  if (focused) focusTile(focused);
  showProgress();
}

// The last command's progress: how many of its tablets carried it out, and which
// ones are still waiting (offline ones named as such).
function showProgress() {
  const targets = tiles.filter((d) => sentTo.has(d.id));
  if (!sent || !targets.length) { $("progress").textContent = ""; $("missing").textContent = ""; return; }
  const done = targets.filter((d) => d.acked != null && d.acked >= sent);
  $("progress").textContent = t("progress").replace("{done}", done.length).replace("{total}", targets.length).replace("{what}", sentWhat);
  const waiting = targets.filter((d) => !(d.acked != null && d.acked >= sent))
    .map((d) => d.name + (d.connected ? "" : ` (${t("offline")})`));
  $("missing").textContent = waiting.length ? t("missing").replace("{names}", waiting.join(", ")) : "";
}

$("select-none").onclick = () => { selected.clear(); showTarget(); render(); };

document.querySelectorAll("#commands button[data-kind]").forEach((btn) => {
  btn.onclick = async () => {
    const kind = btn.dataset.kind;
    const action = { kind };
    if (kind === "open_url") { const u = prompt(t("ask_url"), "https://"); if (!u) return; action.url = u; }
    if (kind === "launch_app") { const p = prompt(t("ask_app")); if (!p) return; action.package = p; }
    if (kind === "show_message") { const m = prompt(t("ask_message")); if (!m) return; action.text = m; }
    if (kind === "allow_list_only") {
      const d = prompt(t("ask_domains")); if (!d) return;
      action.domains = d.split(/[\s,]+/).filter(Boolean);
    }
    if (kind === "logout_and_wipe" && !confirm(t("confirm_wipe"))) return;
    const body = { action };
    if (selected.size) body.devices = [...selected];
    else if ($("group").value) body.group = Number($("group").value);
    const r = await api("POST", `/api/v1/classes/${classId}/commands`, body);
    if (r.ok) { commandSent(await r.json(), btn.textContent); }
  };
});

// Remembers which tablets the command went to: they, and only they, wait for its ack.
function commandSent(reply, what) {
  const st = reply.status || {};
  sent = reply.command; sentWhat = what;
  sentTo = new Set([...(st.pending || []), ...(st.ok || []), ...Object.keys(st.failed || {}).map(Number)]);
  render();
}

$("share-file").onchange = async () => {
  const f = $("share-file").files[0];
  if (!f) return;
  const up = await fetch(`/api/v1/classes/${classId}/documents?name=${encodeURIComponent(f.name)}`,
    { method: "POST", headers: { "x-csrf-token": csrf }, body: f });
  if (!up.ok) return;
  const doc = await up.json();
  const body = { action: { kind: "share_document", url: doc.url, name: doc.name } };
  if (selected.size) body.devices = [...selected];
  else if ($("group").value) body.group = Number($("group").value);
  const r = await api("POST", `/api/v1/classes/${classId}/commands`, body);
  if (r.ok) { commandSent(await r.json(), t("share")); }
  $("share-file").value = "";
};

async function loadGroups() {
  const groups = await (await api("GET", `/api/v1/classes/${classId}/groups`)).json();
  const sel = $("group");
  sel.length = 1;
  for (const g of groups) {
    const o = document.createElement("option"); o.value = g.id; o.textContent = g.name; sel.appendChild(o);
  }
}

// The form shows the rule saved for the class (or the chosen group), and sends the
// days ticked.
async function loadScreenTime() {
  const g = $("group").value;
  const r = await api("GET", `/api/v1/classes/${classId}/screen-time` + (g ? `?group=${g}` : ""));
  if (!r.ok) return;
  const rule = await r.json();
  $("st-minutes").value = rule.minutes_per_day;
  $("st-from").value = rule.from; $("st-to").value = rule.to;
  document.querySelectorAll("#st-days input").forEach((i) => { i.checked = rule.days.includes(i.value); });
  $("st-result").textContent = "";
  ruleSentence(rule);
}

// The rule in force, as a sentence a teacher reads at a glance.
function ruleSentence(rule) {
  const names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  const days = names.filter((d) => rule.days.includes(d) || rule.days.some((r) => r.includes("-") &&
    names.indexOf(d) >= names.indexOf(r.split("-")[0]) && names.indexOf(d) <= names.indexOf(r.split("-")[1])));
  const said = days.length === 7 ? "7/7" : days.map((d) => t(d)).join(", ");
  const vars = { minutes: rule.minutes_per_day, days: said, from: rule.from, to: rule.to };
  $("st-sentence").textContent = fill(rule.minutes_per_day > 0 ? "rule_limit" : "rule_nolimit", vars);
}
$("group").onchange = () => loadScreenTime();

$("st-save").onclick = async () => {
  const days = [...document.querySelectorAll("#st-days input:checked")].map((i) => i.value);
  if (!days.length) { $("st-result").textContent = t("no_days"); return; }
  const body = { minutes_per_day: Number($("st-minutes").value), days, from: $("st-from").value, to: $("st-to").value };
  if ($("group").value) body.group = Number($("group").value);
  const r = await api("POST", `/api/v1/classes/${classId}/screen-time`, body);
  $("st-result").textContent = r.ok ? t("saved_rule") : await r.text();
  if (r.ok) ruleSentence(body);
};

async function loadPupils() {
  const pupils = await (await api("GET", `/api/v1/classes/${classId}/pupils`)).json();
  const list = $("pupils");
  list.innerHTML = "";
  for (const p of pupils) {
    const li = document.createElement("li");
    const tablet = tiles.find((d) => d.pupil && d.pupil[0] === p.id);
    const present = p.saved_present != null ? p.saved_present : !!(tablet && tablet.connected);
    li.innerHTML = `<label><input type="checkbox" data-pupil="${p.id}" ${present ? "checked" : ""}> </label>`;
    const name = `${p.first_name} ${p.last_name}`;
    li.querySelector("label").append(avatar(p.id, name), name);
    list.appendChild(li);
  }
  const choose = $("group-pupils");
  choose.innerHTML = "";
  for (const p of pupils) {
    const li = document.createElement("li");
    li.innerHTML = `<label><input type="checkbox" data-pupil="${p.id}"> </label>`;
    li.querySelector("label").append(`${p.first_name} ${p.last_name}`);
    choose.appendChild(li);
  }
}

$("pupils").onchange = () => { rollTouched = true; };

$("save-group").onclick = async () => {
  const pupils = [...document.querySelectorAll("#group-pupils input:checked")].map((i) => Number(i.dataset.pupil));
  const name = $("group-name").value.trim();
  if (!name || !pupils.length) { $("group-result").textContent = t("group_empty"); return; }
  const r = await api("POST", `/api/v1/classes/${classId}/groups`, { name, pupils });
  $("group-result").textContent = r.ok ? t("group_saved") : await r.text();
  if (r.ok) { $("group-name").value = ""; document.querySelectorAll("#group-pupils input").forEach((i) => { i.checked = false; }); loadGroups(); }
};

// The saved roll calls of a period (the last 30 days unless chosen), a line a day.
async function loadHistory() {
  const q = new URLSearchParams();
  if ($("h-from").value) q.set("from", $("h-from").value);
  if ($("h-to").value) q.set("to", $("h-to").value);
  $("h-csv").href = `/api/v1/classes/${classId}/attendance?${q}&format=csv`;
  const r = await api("GET", `/api/v1/classes/${classId}/attendance?${q}`);
  if (!r.ok) return;
  const rows = await r.json();
  const days = new Map();
  for (const row of rows) { if (!days.has(row.day)) days.set(row.day, []); days.get(row.day).push(row); }
  const list = $("h-days");
  list.innerHTML = "";
  if (!days.size) { const li = document.createElement("li"); li.className = "muted"; li.textContent = t("no_history"); list.appendChild(li); }
  for (const [day, marks] of days) {
    const absent = marks.filter((m) => !m.present).map((m) => m.pupil);
    const li = document.createElement("li");
    li.textContent = fill("day_line", { day, p: marks.length - absent.length, a: absent.length }) +
      (absent.length ? ` — ${fill("absent_names", { names: absent.join(", ") })}` : "");
    list.appendChild(li);
  }
}
$("h-show").onclick = () => loadHistory();

$("save-attendance").onclick = async () => {
  const present = [...document.querySelectorAll("#pupils input:checked")].map((i) => Number(i.dataset.pupil));
  const r = await api("POST", `/api/v1/classes/${classId}/attendance`, { present });
  $("attendance-status").textContent = r.ok ? t("saved") : r.statusText;
  if (r.ok) loadHistory();
};

(async () => {
  translate();
  const r = await fetch("/api/v1/session");
  if (r.ok) start(await r.json()); else showSignin();
})();
