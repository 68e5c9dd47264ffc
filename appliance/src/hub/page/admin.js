// The school admin's page (to a signed-in admin, or the box itself): import, accounts,
// enrolment codes, tablets. Every change goes through the same checked JSON API, with
// the session's CSRF token.
"use strict";
const $ = (id) => document.getElementById(id);
const cell = (row, text) => { const td = document.createElement("td"); td.textContent = text; row.appendChild(td); return td; };
const button = (label, onclick) => { const b = document.createElement("button"); b.type = "button"; b.textContent = label; b.onclick = onclick; return b; };
let school = null;
let csrf = null;
const headers = (extra) => Object.assign(csrf ? { "x-csrf-token": csrf } : {}, extra || {});

async function load() {
  school = await (await fetch("/api/v1/admin/school")).json();
  const classes = $("classes"); classes.innerHTML = "";
  const select = $("code-class"); select.innerHTML = "<option value=''>—</option>";
  for (const c of school.classes) {
    const tr = document.createElement("tr");
    cell(tr, c.name); cell(tr, c.level);
    cell(tr, "").appendChild(button("Supprimer / Delete", () => remove("classes", c.id, c.name)));
    classes.appendChild(tr);
    const o = document.createElement("option"); o.value = c.name; o.textContent = c.name; select.appendChild(o);
  }
  const teachers = $("teachers"); teachers.innerHTML = "";
  for (const t of school.teachers) {
    const tr = document.createElement("tr");
    cell(tr, t.login); cell(tr, t.name); cell(tr, t.classes); cell(tr, t.has_password ? "✓" : "—");
    cell(tr, "").appendChild(button("Supprimer / Delete", () => remove("teachers", t.id, t.login)));
    teachers.appendChild(tr);
  }
  const pupils = $("pupils"); pupils.innerHTML = "";
  for (const p of school.pupils) {
    const tr = document.createElement("tr");
    cell(tr, `${p.first_name} ${p.last_name}`); cell(tr, p.class);
    cell(tr, "").appendChild(button("Supprimer / Delete", () => remove("pupils", p.id, p.first_name)));
    pupils.appendChild(tr);
  }
  const devices = $("devices"); devices.innerHTML = "";
  for (const d of school.devices) {
    const tr = document.createElement("tr");
    cell(tr, d.name); cell(tr, d.connected ? "●" : "○");
    const cls = school.classes.find((c) => c.id === d.class_id);
    cell(tr, cls ? cls.name : "—");
    const sel = document.createElement("select");
    sel.innerHTML = "<option value=''>—</option>";
    for (const p of school.pupils.filter((p) => cls && p.class === cls.name)) {
      const o = document.createElement("option"); o.value = p.id; o.textContent = `${p.first_name} ${p.last_name}`;
      if (d.pupil && d.pupil[0] === p.id && !d.pupil_session) o.selected = true;
      sel.appendChild(o);
    }
    sel.onchange = () => post(`/api/v1/admin/devices/${d.id}/pupil`, { pupil: sel.value ? Number(sel.value) : null }).then(load);
    cell(tr, "").appendChild(sel);
    cell(tr, "").appendChild(button("Révoquer / Revoke", () => post(`/api/v1/admin/devices/${d.id}/revoke`).then(load)));
    devices.appendChild(tr);
  }
}

async function post(path, body) {
  return fetch(path, { method: "POST", headers: headers({ "content-type": "application/json" }), body: body === undefined ? "" : JSON.stringify(body) });
}

async function remove(kind, id, label) {
  if (!confirm(`Supprimer / delete ${label} ?`)) return;
  await fetch(`/api/v1/admin/${kind}/${id}`, { method: "DELETE", headers: headers() });
  load();
}

$("csv-file").onchange = async () => { const f = $("csv-file").files[0]; if (f) $("csv").value = await f.text(); };
$("import").onclick = async () => {
  const r = await fetch("/api/v1/admin/import", { method: "POST", headers: headers({ "content-type": "text/csv" }), body: $("csv").value });
  $("import-result").textContent = await r.text();
  load();
};
$("set-password").onclick = async () => {
  const r = await post(`/api/v1/admin/teachers/${encodeURIComponent($("pw-login").value)}/password`, { password: $("pw-password").value });
  $("pw-result").textContent = r.ok ? "✓" : await r.text();
  $("pw-password").value = ""; load();
};
$("new-code").onclick = async () => {
  const body = { name: $("code-name").value };
  if ($("code-class").value) body.class = $("code-class").value;
  const r = await post("/api/v1/admin/enrolment-codes", body);
  $("code").textContent = r.ok ? (await r.json()).code : await r.text();
};
(async () => {
  const r = await fetch("/api/v1/session");
  if (r.ok) csrf = (await r.json()).csrf;
  load();
})();
