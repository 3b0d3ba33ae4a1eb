// The query log's live tail: polls /api/v1/queries with the page's filters and puts rows newer than
// the newest shown at the top. Everything else on the dashboard works without this script.
"use strict";
(function () {
  const table = document.querySelector("table[data-tail]");
  if (!table) return;
  const body = table.tBodies[0];
  const filters = table.getAttribute("data-tail");
  const fleet = table.hasAttribute("data-fleet"); // the store holds several gateways: one more cell
  let newest = 0;
  let primed = false; // the first poll only learns what the server-rendered page already shows
  const cell = (html) => { const td = document.createElement("td"); td.append(html); return td; };
  const link = (href, text) => { const a = document.createElement("a"); a.href = href; a.textContent = text; return a; };
  const when = (t) => new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
  function row(q) {
    const tr = document.createElement("tr");
    tr.className = "new";
    const act = document.createElement("span");
    act.className = "act " + q.action;
    act.textContent = q.action;
    tr.append(
      cell(when(q.time)),
      cell(q.client ? link("/queries?client=" + encodeURIComponent(q.client), q.client) : "-"),
      cell(link("/name/" + encodeURIComponent(q.qname), q.qname)),
      cell(q.qtype), cell(act), cell(q.reason || ""),
      cell(q.score === null || q.score === undefined ? "-" : q.score.toFixed(3)));
    if (fleet) tr.append(cell(q.gateway || "-"));
    return tr;
  }
  async function poll() {
    try {
      const r = await fetch("/api/v1/queries?limit=50&" + filters, { credentials: "same-origin" });
      if (r.ok) {
        const rows = (await r.json()).filter((q) => q.id > newest);
        if (primed && rows.length) {
          const empty = body.querySelector("td.empty");
          if (empty) empty.parentNode.remove();
          for (const q of rows.reverse()) body.insertBefore(row(q), body.firstChild);
          while (body.rows.length > 500) body.deleteRow(-1);
        }
        for (const q of rows) newest = Math.max(newest, q.id);
        primed = true;
      }
    } catch (e) { /* the server restarts: try again next tick */ }
    setTimeout(poll, 2000);
  }
  poll();
})();
