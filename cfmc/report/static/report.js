// cfmc run report: sort the candidate table on a header click, filter its rows by elements.
// Plain JS, no libraries; each .cfmc-report on the page (e.g. several in a notebook) is set up once.
(function () {
  "use strict";

  function sortKey(cell, numeric) {
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent;
    if (numeric) {
      var x = parseFloat(raw);
      return isNaN(x) ? null : x;
    }
    raw = raw.trim().toLowerCase();
    return raw === "" ? null : raw;
  }

  function setUp(root) {
    if (root.getAttribute("data-ready") === "1") return;
    root.setAttribute("data-ready", "1");
    var table = root.querySelector("table.candidates");
    if (!table) return;
    var body = table.tBodies[0];
    var heads = Array.prototype.slice.call(table.querySelectorAll("th[data-col]"));

    function sortBy(th) {
      var index = th.cellIndex;
      var numeric = th.getAttribute("data-type") === "num";
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      var rows = Array.prototype.map.call(body.rows, function (row, i) {
        return { row: row, key: sortKey(row.cells[index], numeric), i: i };
      });
      rows.sort(function (a, b) {
        if (a.key === null || b.key === null) {  // blanks last in both directions
          if (a.key === b.key) return a.i - b.i;
          return a.key === null ? 1 : -1;
        }
        if (a.key < b.key) return -dir;
        if (a.key > b.key) return dir;
        return a.i - b.i;
      });
      var fragment = document.createDocumentFragment();
      rows.forEach(function (r) { fragment.appendChild(r.row); });
      body.appendChild(fragment);
    }
    heads.forEach(function (th) {
      th.addEventListener("click", function () { sortBy(th); });
    });

    var input = root.querySelector("input.element-filter");
    var count = root.querySelector(".count");
    function filter() {
      var wanted = input.value.split(/[\s,;]+/).filter(Boolean).map(function (t) {
        return t.charAt(0).toUpperCase() + t.slice(1).toLowerCase();
      });
      var shown = 0;
      Array.prototype.forEach.call(body.rows, function (row) {
        var have = (row.getAttribute("data-elements") || "").split(" ");
        var keep = wanted.every(function (el) { return have.indexOf(el) >= 0; });
        row.hidden = !keep;
        if (keep) shown += 1;
      });
      if (count) count.textContent = shown + " of " + count.getAttribute("data-total") + " shown";
    }
    if (input) input.addEventListener("input", filter);
  }

  Array.prototype.forEach.call(document.querySelectorAll(".cfmc-report"), setUp);
})();
