"use strict";
(function () {
  var table = document.querySelector("table.runs");
  if (!table) { return; }
  var body = table.tBodies[0];
  function value(row, col) {
    var cell = row.cells[col];
    var raw = cell ? cell.getAttribute("data-sort") : null;
    return raw === null ? (cell ? cell.textContent.trim() : "") : raw;
  }
  function sortBy(th) {
    var col = th.cellIndex;
    var numeric = th.getAttribute("data-type") === "num";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, col), y = value(b, col);
      if (x === "" && y !== "") { return 1; }
      if (y === "" && x !== "") { return -1; }
      var c = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return ascending ? c : -c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  Array.prototype.forEach.call(table.querySelectorAll("th[data-type] button"), function (button) {
    button.addEventListener("click", function () { sortBy(button.parentElement); });
  });
  var only = document.getElementById("failures-only");
  if (only) {
    only.addEventListener("change", function () {
      Array.prototype.forEach.call(body.rows, function (row) {
        row.hidden = only.checked && !row.classList.contains("failed");
      });
    });
  }
})();
