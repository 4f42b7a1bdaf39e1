// shoal web: the pages' behaviour.  No inline script anywhere (the
// Content-Security-Policy forbids it), no library, no CDN: this file only.
// Text from the daemon or the file is always set with textContent, never
// parsed as HTML.
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const STALE_AFTER_MS = 12000;   // no fresh status for this long: the page says its data is stale
  const REFRESH_MS = 5000;        // a status read this often even when no event comes

  async function call(method, url, body, extra) {
    const headers = Object.assign({"X-CSRF-Token": csrf()}, extra || {});
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {method, headers, credentials: "same-origin",
                                       body: body === undefined ? undefined : JSON.stringify(body)});
    if (response.status === 401) {
      // an editor keeps its text: the operator logs in again in another tab and retries
      if (document.getElementById("config-form") || document.getElementById("forms-form")) {
        throw new Error("your session ended: log in again in another tab (your edits are still here), then retry");
      }
      window.location.assign("/login");
      throw new Error("logged out");
    }
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return {status: response.status, data, response};
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function hostPort(address, port) {
    return (address && address.includes(":") ? "[" + address + "]" : (address || "-")) + ":" + port;
  }

  // ------------------------------------------------------------ log out
  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest('[data-action="logout"]');
    if (!button) return;
    await call("POST", "/logout");
    window.location.assign("/login");
  });

  // ------------------------------------------------------------ monitoring
  function monitor(main) {
    const mayOperate = main.dataset.mayOperate === "true";
    let lastOk = Date.now();
    let streamUp = true;
    let pending = null;
    let held = null;  // a status not shown yet: the operator is typing a weight
    const selected = new Set();
    const freshness = document.getElementById("freshness");
    const problem = document.getElementById("problem");
    const said = document.getElementById("action-result");

    function say(ok, text) {
      said.hidden = false;
      said.className = ok ? "done" : "problem";
      said.dataset.result = ok ? "ok" : "refused";
      said.textContent = text;
    }

    function field(name, value) {
      for (const node of main.querySelectorAll('[data-field="' + name + '"]')) node.textContent = value;
    }

    function typing() {
      const a = document.activeElement;
      return a && a.matches && a.matches("#services input[data-weight-input]") && a.value !== "";
    }

    function render(s) {
      if (typing()) { held = s; return; }
      held = null;
      const role = main.querySelector("[data-role]");
      role.dataset.role = s.role; role.textContent = s.role;
      field("node", s.node);
      field("serial_no", s.serial_no);
      field("vips", (s.vips || []).join(" ") || "none");
      field("drift", s.table ? String(s.table.drift.count) : "?");
      const p = s.partner || {};
      const prole = main.querySelector("[data-partner-role]");
      prole.dataset.partnerRole = p.state || "unknown"; prole.textContent = p.state || "unknown";
      field("partner_alive", p.alive ? "heard" : "not heard");
      field("last_heard", p.last_heard === null || p.last_heard === undefined ? "never" : p.last_heard + " s ago");
      field("partner_serial", p.serial_no === null || p.serial_no === undefined ? "?" : p.serial_no);
      field("serial_match", p.drift ? "differs" : "same");
      const services = document.getElementById("services");
      const fresh = document.createDocumentFragment();
      for (const v of s.services || []) fresh.appendChild(virtual(v));
      services.replaceChildren(fresh);
    }

    function virtual(v) {
      const box = el("div", {"class": "virtual", "data-virtual": v.name});
      const h = el("h3", {}, "virtual " + v.name + " ");
      h.appendChild(el("span", {"class": "where"},
        (v.protocol || "").toUpperCase() + " " + v.address + ":" + v.port + " " + v.scheduler));
      box.appendChild(h);
      const table = el("table");
      const head = el("tr");
      for (const t of ["server", "address", "health", "weight", "connections", "admin", "last check", "detail", "", "", "select"]) head.appendChild(el("th", {}, t));
      table.appendChild(el("thead")).appendChild(head);
      const body = table.appendChild(el("tbody"));
      for (const r of v.servers || []) {
        const health = r.health === "up" || r.health === "down" ? r.health : "unknown";
        const key = v.name + "/" + r.name;
        const row = el("tr", {"data-server": key, "data-health": health});
        row.appendChild(el("td", {"data-field": "name"}, r.name));
        row.appendChild(el("td", {}, hostPort(r.address, r.port)));
        row.appendChild(el("td", {"class": "health"}, health));
        row.appendChild(el("td", {}, r.weight));
        const c = r.connections;  // null: the dataplane has no counters (nft, dry-run) or has not counted it
        row.appendChild(el("td", {"data-field": "connections", "title": "active / inactive connections"},
                           c ? c.active + " / " + c.inactive : "-"));
        row.appendChild(el("td", {}, r.admin));
        row.appendChild(el("td", {}, r.last_check === null || r.last_check === undefined ? "-" : (r.last_check ? "ok" : "failed")));
        row.appendChild(el("td", {}, r.last_detail || "-"));
        const cell = el("td");
        if (mayOperate) {
          const action = r.admin === "drain" ? "undrain" : "drain";
          cell.appendChild(el("button", {"type": "button", "data-action": action}, action));
        }
        row.appendChild(cell);
        const weight = el("td");
        if (mayOperate) {
          weight.appendChild(el("input", {"type": "number", "min": "0", "max": "65535", "data-weight-input": "",
                                          "aria-label": "operator weight", "placeholder": "weight"}));
          weight.appendChild(el("button", {"type": "button", "data-action": "weight"}, "set"));
        }
        row.appendChild(weight);
        const pick = el("td");
        if (mayOperate) {
          const box = pick.appendChild(el("input", {"type": "checkbox", "data-select": "", "aria-label": "select " + key}));
          box.checked = selected.has(key);
        }
        row.appendChild(pick);
        body.appendChild(row);
      }
      box.appendChild(table);
      return box;
    }

    async function refresh() {
      pending = null;
      try {
        const r = await call("GET", "/api/v1/status", undefined, {"X-Shoal-Background": "1"});
        if (r.status === 200 && r.data) {
          render(r.data);
          lastOk = Date.now();
          problem.hidden = true;
        } else {
          problem.hidden = false;
          problem.textContent = (r.data && r.data.error) || ("status: HTTP " + r.status);
        }
      } catch (e) {
        problem.hidden = false;
        problem.textContent = "cannot reach the web tool: " + e.message;
      }
      if (main.dataset.partner === "true") partnerView();
      tick();
    }

    async function partnerView() {
      // the partner's daemon as it sees itself, through its own web tool
      let text;
      try {
        const r = await call("GET", "/api/v1/partner/status", undefined, {"X-Shoal-Background": "1"});
        text = r.status === 200
          ? r.data.node + ", " + r.data.role + ", serial_no " + r.data.serial_no + ", VIPs " + ((r.data.vips || []).join(" ") || "none")
          : "not known: " + ((r.data && r.data.error) || "HTTP " + r.status);
      } catch (e) { text = "not known: " + e.message; }
      field("partner_own", text);
    }

    function soon() { if (!pending) pending = setTimeout(refresh, 100); }

    function tick() {
      const age = Math.round((Date.now() - lastOk) / 1000);
      const stale = !streamUp || Date.now() - lastOk > STALE_AFTER_MS;
      main.dataset.stale = stale ? "true" : "false";
      document.body.classList.toggle("stale", stale);
      freshness.className = stale ? "stale" : "fresh";
      freshness.textContent = stale
        ? "STALE: last update " + age + " s ago" + (streamUp ? "" : " (no live events from the daemon)")
        : "live, updated " + age + " s ago";
    }

    main.addEventListener("change", (ev) => {
      if (!ev.target.matches("input[data-select]")) return;
      const key = ev.target.closest("[data-server]").dataset.server;
      if (ev.target.checked) selected.add(key); else selected.delete(key);
    });
    main.addEventListener("focusout", () => { if (held) setTimeout(() => { if (held && !typing()) render(held); }, 0); });

    async function admin(body) {
      const r = await call("POST", "/api/v1/admin", body);
      const what = [body.action, body.server || "", body.weight === undefined ? "" : body.weight].join(" ").trim();
      if (r.status === 200) say(true, what + ": done");
      else say(false, what + " refused: " + ((r.data && r.data.error) || "HTTP " + r.status));
      return r.status === 200;
    }

    main.addEventListener("click", async (ev) => {
      const button = ev.target.closest("button[data-action]");
      if (!button) return;
      const action = button.dataset.action;
      if (action === "drain-selected" || action === "undrain-selected") {
        button.disabled = true;
        for (const server of Array.from(selected).sort()) {
          if (await admin({action: action.split("-")[0], server})) selected.delete(server);
        }
        button.disabled = false;
        refresh();
        return;
      }
      let body;
      if (action === "weight") {
        const input = button.closest("[data-server]").querySelector("input[data-weight-input]");
        const weight = Number(input.value);
        if (input.value === "" || !Number.isInteger(weight) || weight < 0 || weight > 65535) {
          say(false, "a weight is a whole number from 0 to 65535");
          return;
        }
        input.value = "";
        body = {action, server: button.closest("[data-server]").dataset.server, weight};
      } else if (action === "failover") {
        if (!window.confirm("Hand over: this router gives up its VIPs and the partner takes them and the table. " +
                            "Connections through this router move to the partner. Go on?")) return;
        body = {action: "failover"};
      } else if (action === "drain" || action === "undrain") {
        body = {action, server: button.closest("[data-server]").dataset.server};
      } else return;
      button.disabled = true;
      await admin(body);
      button.disabled = false;
      refresh();
    });

    const events = new EventSource("/api/v1/events");
    events.onmessage = () => soon();
    events.addEventListener("stream", (ev) => {
      try { streamUp = JSON.parse(ev.data).state === "up"; } catch (e) { streamUp = false; }
      soon();
    });
    events.onerror = () => { streamUp = false; tick(); };
    events.onopen = () => soon();
    setInterval(refresh, REFRESH_MS);
    setInterval(tick, 1000);
    refresh();
  }

  // ------------------------------------------------------------ configuration
  function configPage(form) {
    const text = document.getElementById("config-text");
    const result = document.getElementById("config-result");
    const errors = document.getElementById("config-errors");
    const diff = document.getElementById("config-diff");
    const ops = document.getElementById("config-ops");
    const opsTitle = document.getElementById("config-ops-title");
    const historyBody = document.querySelector("#config-history tbody");
    const mayApply = form.dataset.mayApply === "true";
    let loaded = text.value;

    function showOps(list) {
      const show = Array.isArray(list);
      ops.hidden = opsTitle.hidden = !show;
      if (show) ops.textContent = list.length ? list.map((op) => "ipvsadm " + op).join("\n") : "(none)";
    }

    async function history() {
      const r = await call("GET", "/api/v1/config/history", undefined, {"X-Shoal-Background": "1"});
      if (r.status !== 200) return;
      historyBody.replaceChildren();
      for (const v of r.data.versions) {
        const row = el("tr", {"data-version": v.id});
        row.appendChild(el("td", {}, v.saved_at));
        row.appendChild(el("td", {}, v.serial_no));
        row.appendChild(el("td", {}, v.size));
        const cell = row.appendChild(el("td"));
        cell.appendChild(el("button", {"type": "button", "data-action": "show-version"}, "show"));
        if (mayApply) cell.appendChild(el("button", {"type": "button", "data-action": "revert"}, "revert to this"));
        historyBody.appendChild(row);
      }
    }

    historyBody.addEventListener("click", async (ev) => {
      const button = ev.target.closest("button[data-action]");
      if (!button) return;
      const id = button.closest("[data-version]").dataset.version;
      if (button.dataset.action === "show-version") {
        const r = await call("GET", "/api/v1/config/history/" + encodeURIComponent(id));
        if (r.status === 200) { diff.hidden = false; diff.textContent = r.data.text; showOps(null); }
        return;
      }
      if (!window.confirm("Write version " + id + " over the file (serial_no raised) and reload the daemon?")) return;
      const r = await call("POST", "/api/v1/config/revert", {version: id}, {"If-Match": form.dataset.etag});
      applied(r);
    });

    async function applied(r) {
      if (r.status === 200) {
        result.dataset.result = "applied";
        result.textContent = "applied: serial_no " + r.data.serial_no + (r.data.reloaded ? ", reloaded" : ", NOT reloaded: " + JSON.stringify(r.data.detail));
        diff.hidden = false;
        diff.textContent = r.data.diff || "(no change)";
        showOps(r.data.table_ops);
        await reload();
        await history();
      } else if (r.status === 412) {
        result.dataset.result = "stale";
        result.textContent = "refused: the file changed since you loaded it. Copy your edits, then reload the page.";
      } else if (r.status === 422) {
        result.dataset.result = "invalid";
        showErrors(r.data.errors);
        result.textContent = "refused: invalid";
      } else {
        result.dataset.result = "error";
        result.textContent = "refused: " + ((r.data && r.data.error) || "HTTP " + r.status);
      }
    }

    function showErrors(list) {
      errors.replaceChildren();
      for (const e of list || []) {
        const item = el("li", {"data-line": e.line, "data-col": e.col}, "line " + e.line + ", column " + e.col + ": " + e.message);
        item.addEventListener("click", () => select(e.line, e.col));
        errors.appendChild(item);
      }
    }

    function select(line, col) {
      const lines = text.value.split("\n");
      let offset = 0;
      for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
      offset += Math.max(0, col - 1);
      text.focus();
      text.setSelectionRange(offset, offset);
    }

    async function reload() {
      const r = await call("GET", "/api/v1/config");
      if (r.status !== 200) return;
      text.value = loaded = r.data.text;
      form.dataset.etag = r.response.headers.get("ETag");
      form.querySelector('[data-field="serial_no"]').textContent = r.data.serial_no;
      form.querySelector('[data-field="etag"]').textContent = form.dataset.etag;
    }

    form.addEventListener("click", (ev) => editorAction(ev).catch((e) => { result.dataset.result = "error"; result.textContent = e.message; }));

    async function editorAction(ev) {
      const button = ev.target.closest("button[data-action]");
      if (!button) return;
      const action = button.dataset.action;
      if (action === "push") {
        if (text.value !== loaded) { result.dataset.result = "error"; result.textContent = "apply or discard your edits first: the file as it is now is what is copied"; return; }
        if (!window.confirm("Copy this file (as it is now) over the partner's, and reload the partner's daemon?")) return;
        const r = await call("POST", "/api/v1/config/push", {}, {"If-Match": form.dataset.etag});
        result.dataset.result = r.status === 200 ? "pushed" : "error";
        result.textContent = r.status === 200
          ? "copied to the partner: serial_no " + r.data.serial_no + (r.data.reloaded ? ", reloaded there" : ", NOT reloaded there")
          : "not copied: " + ((r.data && r.data.error) || "HTTP " + r.status);
        if (r.status === 200) await reload();
        return;
      }
            if (action === "revert-editor") { text.value = loaded; showErrors([]); diff.hidden = true; showOps(null); result.textContent = ""; return; }
      const check = await call("POST", "/api/v1/config/check", {text: text.value});
      if (check.status !== 200) { result.textContent = "check failed: HTTP " + check.status; return; }
      showErrors(check.data.errors);
      if (!check.data.valid) {
        result.dataset.result = "invalid";
        result.textContent = check.data.errors.length + " error(s): nothing applied";
        diff.hidden = true;
        showOps(null);
        return;
      }
      if (action === "check") { result.dataset.result = "valid"; result.textContent = "valid"; return; }
      diff.textContent = check.data.diff || "(no change)";
      diff.hidden = false;
      showOps(check.data.table_ops);
      if (action === "preview") { result.dataset.result = "valid"; result.textContent = "valid; the change:"; return; }
      if (action !== "apply") return;
      const r = await call("PUT", "/api/v1/config", {text: text.value}, {"If-Match": form.dataset.etag});
      await applied(r);
    }
    history().catch(() => {});
  }

  // ------------------------------------------------------------ configuration forms
  // Key edits are read from the fields when the form is checked; block
  // additions and removals (and a new block's address) are kept in `blockOps`
  // as they are made.  Sent in this order: additions, key edits, removals.
  function formsPage(form) {
    const result = document.getElementById("forms-result");
    const errors = document.getElementById("forms-errors");
    const diff = document.getElementById("forms-diff");
    const ops = document.getElementById("forms-ops");
    const pending = document.getElementById("forms-pending");
    const blockOps = [];
    const pathOf = (set) => JSON.parse(set.dataset.path);
    const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    const fieldsets = () => Array.from(form.querySelectorAll("fieldset[data-path]"));

    form.addEventListener("input", (ev) => {
      if (ev.target.matches("input[data-key]")) ev.target.classList.toggle("changed", ev.target.value !== ev.target.defaultValue);
    });

    function edits() {
      const out = blockOps.filter((o) => o.op !== "remove_block");
      for (const input of form.querySelectorAll("input[data-key]")) {
        const set = input.closest("fieldset");
        if (set.dataset.deleted === "true") continue;
        if (input.dataset.removed === "true") {
          if (input.dataset.added !== "true") out.push({block: pathOf(set), key: input.dataset.key, value: null});
          continue;
        }
        if (input.value === input.defaultValue) continue;
        out.push({block: pathOf(set), key: input.dataset.key, value: input.value});
      }
      return out.concat(blockOps.filter((o) => o.op === "remove_block"));
    }

    function clear() {
      for (const span of form.querySelectorAll("[data-error], [data-block-error]")) { span.hidden = true; span.textContent = ""; }
      for (const input of form.querySelectorAll("input[aria-invalid]")) input.removeAttribute("aria-invalid");
      errors.replaceChildren();
      diff.hidden = ops.hidden = true;
    }

    function fieldOf(e) {
      if (!e.block || !e.key) return null;
      for (const set of fieldsets()) {
        if (!same(pathOf(set), e.block)) continue;
        for (const label of set.querySelectorAll("label[data-key]")) if (label.dataset.key === e.key) return label;
      }
      return null;
    }

    function placeOf(e) {  // where an add_block or remove_block error goes
      if (e.op === "add_block") {
        for (const box of form.querySelectorAll(".add-block")) {
          if (e.block && e.block.length ? box.dataset.parent === e.block[0] : box.dataset.add === "virtual") return box.querySelector("[data-error]");
        }
      } else if (e.op === "remove_block") {
        const set = fieldsets().find((f) => same(pathOf(f), e.block));
        if (set) return set.querySelector("[data-block-error]");
      }
      return null;
    }

    function say(span, message) {
      span.hidden = false;
      span.textContent = (span.textContent ? span.textContent + "; " : "") + message;
    }

    function show(list) {
      for (const e of list) {
        const label = fieldOf(e);
        const place = label ? label.querySelector("[data-error]") : placeOf(e);
        if (place) {
          say(place, e.op === "add_block" ? e.name + ": " + e.message : e.message);
          if (label) label.querySelector("input").setAttribute("aria-invalid", "true");
        } else {
          const where = e.block && e.block.length ? e.block.join("/") + (e.key ? " " + e.key : "") + ": " : "";
          errors.appendChild(el("li", {}, (e.line ? "line " + e.line + ", column " + e.col + ": " : "") + where + e.message));
        }
      }
    }

    function listPending() {
      pending.replaceChildren();
      blockOps.forEach((o, i) => {
        if (!o.op) return;  // a new block's address: shown with it
        const text = o.op === "add_block"
          ? "add " + (o.kind === "virtual" ? "virtual " + o.name : "real server " + o.name + " to virtual " + o.parent)
          : "delete " + (o.block.length === 1 ? "virtual " + o.block[0] : "real server " + o.block[1] + " of virtual " + o.block[0]);
        const li = el("li", {"data-pending": String(i)}, text + " ");
        li.appendChild(el("button", {type: "button", "data-action": "undo", "data-index": String(i)}, "undo"));
        pending.appendChild(li);
      });
    }

    function newField(set, key, placeholder) {
      const label = el("label", {class: "field", "data-key": key});
      label.appendChild(el("span", {class: "key"}, key));
      const input = el("input", {name: key, "data-key": key, "data-added": "true", spellcheck: "false", placeholder: placeholder || ""});
      label.appendChild(input);
      label.appendChild(el("button", {type: "button", class: "small", "data-action": "remove-key"}, "remove"));
      label.appendChild(el("span", {class: "field-error", "data-error": "", hidden: ""}));
      set.insertBefore(label, set.querySelector(".block-tools"));
      return input;
    }

    function blockAction(button) {
      const set = button.closest("fieldset[data-path]");
      const action = button.dataset.action;
      if (action === "remove-key") {
        const input = button.closest("label").querySelector("input");
        const removed = input.dataset.removed !== "true";
        input.dataset.removed = String(removed);
        input.classList.toggle("removed", removed);
        input.readOnly = removed;
        button.textContent = removed ? "keep" : "remove";
      } else if (action === "add-key") {
        const select = set.querySelector("select[data-add-key]");
        const option = select.selectedOptions[0];
        if (!option || !option.value) return;
        const had = Array.from(set.querySelectorAll("label[data-key]")).find((l) => l.dataset.key === option.value);
        (had ? had.querySelector("input") : newField(set, option.value, "default " + option.dataset.default)).focus();
        option.disabled = true;
        select.value = "";
      } else if (action === "toggle-active") {
        const had = Array.from(set.querySelectorAll("label[data-key]")).find((l) => l.dataset.key === "active");
        const input = had ? had.querySelector("input") : newField(set, "active");
        const activate = set.dataset.active === "false";
        input.value = activate ? "1" : "0";
        input.dataset.removed = "false";
        input.classList.toggle("changed", input.value !== input.defaultValue);
        set.dataset.active = String(activate);
        button.textContent = activate ? "deactivate" : "activate";
      } else if (action === "delete-block") {
        const path = pathOf(set);
        const servers = path.length === 1 ? fieldsets().filter((f) => { const p = pathOf(f); return p.length === 2 && p[0] === path[0]; }) : [];
        const what = path.length === 1
          ? "virtual " + path[0] + (servers.length ? " and its " + servers.length + " real server(s): " + servers.map((f) => pathOf(f)[1]).join(", ") : " (it has no real server)")
          : "real server " + path[1] + " of virtual " + path[0];
        if (!window.confirm("Delete " + what + "? Its lines and the comment lines right above it leave the file when you apply.")) return;
        blockOps.push({op: "remove_block", block: path});
        for (const f of [set, ...servers]) f.dataset.deleted = "true";
        listPending();
      } else if (action === "add-block") {
        const box = button.closest(".add-block");
        const name = box.querySelector('[data-new="name"]');
        const address = box.querySelector('[data-new="address"]');
        const span = box.querySelector("[data-error]");
        span.hidden = true; span.textContent = "";
        if (!name.value.trim()) { say(span, "a name is needed"); return; }
        const op = {op: "add_block", kind: box.dataset.add, name: name.value.trim()};
        if (box.dataset.parent !== undefined) op.parent = box.dataset.parent;
        blockOps.push(op);
        if (address.value.trim()) {
          blockOps.push({block: op.parent === undefined ? [op.name] : [op.parent, op.name], key: "address", value: address.value.trim()});
        }
        name.value = address.value = "";
        listPending();
      } else if (action === "undo") {
        const o = blockOps[Number(button.dataset.index)];
        if (o.op === "add_block") {  // and the address that came with it
          const next = blockOps[Number(button.dataset.index) + 1];
          blockOps.splice(Number(button.dataset.index), next && next.op === undefined && next.key === "address" ? 2 : 1);
        } else {
          blockOps.splice(Number(button.dataset.index), 1);
          for (const f of fieldsets()) if (same(pathOf(f).slice(0, o.block.length), o.block)) delete f.dataset.deleted;
        }
        listPending();
      }
    }

    form.addEventListener("click", (ev) => {
      const button = ev.target.closest("button[data-action]");
      if (!button) return;
      if (button.dataset.action !== "preview" && button.dataset.action !== "apply") { blockAction(button); return; }
      formAction(button).catch((e) => { result.dataset.result = "error"; result.textContent = e.message; });
    });

    async function formAction(button) {
      clear();
      const list = edits();
      if (!list.length) { result.textContent = "nothing changed"; return; }
      const r = await call("POST", "/api/v1/config/check", {etag: form.dataset.etag, edits: list});
      if (r.status === 412) { result.dataset.result = "stale"; result.textContent = "refused: the file changed since this form was made; reload the page"; return; }
      if (r.status !== 200) { result.dataset.result = "error"; result.textContent = "refused: " + ((r.data && r.data.error) || "HTTP " + r.status); return; }
      if (!r.data.valid) {
        result.dataset.result = "invalid";
        result.textContent = r.data.errors.length + " error(s): nothing applied";
        show(r.data.errors);
        return;
      }
      diff.hidden = false; diff.textContent = r.data.diff || "(no change)";
      ops.hidden = false; ops.textContent = (r.data.table_ops || []).map((op) => "ipvsadm " + op).join("\n") || "(no table operation)";
      if (button.dataset.action !== "apply") { result.dataset.result = "valid"; result.textContent = "valid; the change:"; return; }
      const put = await call("PUT", "/api/v1/config", {text: r.data.text}, {"If-Match": form.dataset.etag});
      if (put.status === 200) {
        result.dataset.result = "applied";
        result.textContent = "applied: serial_no " + put.data.serial_no + (put.data.reloaded ? ", reloaded" : ", NOT reloaded: " + JSON.stringify(put.data.detail)) + "; reloading the form";
        setTimeout(() => window.location.reload(), 800);
      } else if (put.status === 412) {
        result.dataset.result = "stale"; result.textContent = "refused: the file changed meanwhile; reload the page";
      } else if (put.status === 422) {
        result.dataset.result = "invalid"; show(put.data.errors); result.textContent = "refused: invalid";
      } else {
        result.dataset.result = "error"; result.textContent = "refused: " + ((put.data && put.data.error) || "HTTP " + put.status);
      }
    }
  }

  // ------------------------------------------------------------ what if
  function whatifPage(main) {
    const form = document.getElementById("whatif-form");
    const result = document.getElementById("whatif-result");
    const outcome = document.getElementById("whatif-outcome");
    const put = (name, text) => { outcome.querySelector('[data-field="' + name + '"]').textContent = text; };
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fault = {};
      fault[form.kind.value] = form.value.value.trim();
      if (form.at.value !== "") fault.at = Number(form.at.value);
      result.textContent = "running...";
      try {
        const r = await call("POST", "/api/v1/whatif", {faults: [fault], duration_s: Number(form.duration.value || 30)});
        if (r.status !== 200) {
          outcome.hidden = true;
          result.dataset.result = "error";
          result.textContent = "cannot simulate: " + ((r.data && r.data.error) || "HTTP " + r.status);
          return;
        }
        result.dataset.result = "done";
        result.textContent = "simulated " + r.data.duration_s + " s" + (r.data.assumed.length ? " (assumed: " + r.data.assumed.join("; ") + ")" : "");
        put("vip_owner", r.data.vip_owner);
        put("roles", Object.entries(r.data.roles).map(([k, v]) => k + " " + v).join(", "));
        put("violations", r.data.violations.join("\n"));
        put("table", r.data.table.join("\n") || "(no single active router)");
        put("timeline", r.data.timeline.join("\n"));
        outcome.hidden = false;
      } catch (e) { result.textContent = e.message; }
    });
  }

  // ------------------------------------------------------------ users
  function usersPage(main) {
    const result = document.getElementById("user-result");
    main.addEventListener("click", async (ev) => {
      const button = ev.target.closest('button[data-action="delete-user"]');
      if (!button) return;
      if (!window.confirm("Remove the user " + button.dataset.name + "? Their sessions end now.")) return;
      const r = await call("DELETE", "/api/v1/users/" + encodeURIComponent(button.dataset.name));
      if (r.status === 200) window.location.reload();
      else result.textContent = "refused: " + ((r.data && r.data.error) || "HTTP " + r.status);
    });
    document.getElementById("user-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = ev.target;
      const r = await call("PUT", "/api/v1/users/" + encodeURIComponent(f.name.value),
                           {role: f.role.value, password: f.password.value});
      if (r.status === 200) window.location.reload();
      else result.textContent = "refused: " + ((r.data && r.data.error) || "HTTP " + r.status);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const main = document.getElementById("monitor");
    if (main) monitor(main);
    const form = document.getElementById("config-form");
    if (form) configPage(form);
    const whatif = document.getElementById("whatif-page");
    if (whatif) whatifPage(whatif);
    const forms = document.getElementById("forms-form");
    if (forms) formsPage(forms);
    const users = document.getElementById("users-page");
    if (users) usersPage(users);
  });
})();
