// CDR Reports view: sortable tables, auto-submitting pickers, the Airflow UI's theme, and links
// into the Airflow UI that navigate the UI itself when the view is shown inside it (an iframe).
// No library, no network access of its own.
(function () {
  "use strict";

  // ---- embedded in the Airflow UI (same origin)? -------------------------------------------
  function parentDocument() {
    try {
      if (window.parent !== window && window.parent.document) return window.parent.document;
    } catch (e) { /* another origin: not embedded in Airflow */ }
    return null;
  }
  var outer = parentDocument();
  var root = document.documentElement;

  // ---- theme: follow the UI's light/dark choice (class "light"/"dark" on its <html>) -------
  function syncTheme() {
    if (!outer) return;
    var classes = outer.documentElement.classList;
    if (classes.contains("dark")) root.setAttribute("data-theme", "dark");
    else if (classes.contains("light")) root.setAttribute("data-theme", "light");
    else root.removeAttribute("data-theme");
  }
  if (outer) {
    root.setAttribute("data-embedded", "1");
    syncTheme();
    new MutationObserver(syncTheme).observe(outer.documentElement, { attributes: true, attributeFilter: ["class", "style"] });
  }

  // ---- links to Airflow UI pages ------------------------------------------------------------
  // The UI's iframe sandbox does not allow navigating the top window; being same-origin, the
  // view asks the UI's router to go there (history entry + popstate), as a click inside it would.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-airflow-link]");
    if (!link || !outer || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    try {
      var win = window.parent;
      win.history.pushState(null, "", link.getAttribute("href"));
      win.dispatchEvent(new win.PopStateEvent("popstate", { state: null }));
      event.preventDefault();
    } catch (e) { /* fall back to a normal navigation of the frame */ }
  });

  // ---- pickers --------------------------------------------------------------------------------
  var form = document.getElementById("picker");
  if (form) {
    form.addEventListener("change", function (event) {
      var name = event.target && event.target.name;
      if (name === "type") {
        // Another type has other periods and operators: start from its latest report.
        form.elements.period.value = "";
        form.elements.operator.value = "";
        form.elements.period.disabled = true;
      }
      if (name === "periods") return; // typed numbers are submitted with the button / Enter
      form.submit();
    });
  }

  // ---- sortable tables ------------------------------------------------------------------------
  function compare(a, b, numeric) {
    if (a === b) return 0;
    if (a === "") return -1; // empty (e.g. no answered call) sorts first ascending
    if (b === "") return 1;
    if (numeric) return parseFloat(a) - parseFloat(b);
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var headers = table.querySelectorAll("thead th");
    var body = table.tBodies[0];
    Array.prototype.forEach.call(headers, function (th) {
      var button = th.querySelector("button.sort");
      if (!button) return;
      button.addEventListener("click", function () {
        var col = parseInt(th.getAttribute("data-col"), 10);
        var numeric = th.getAttribute("data-type") === "number";
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var v1 = r1.cells[col].getAttribute("data-v") || "";
          var v2 = r2.cells[col].getAttribute("data-v") || "";
          var order = compare(v1, v2, numeric);
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); }); // the totals row stays in <tfoot>
      });
    });
  });
})();
