// Portico developer portal: the administrator's page editor.  While the
// Markdown is typed, the preview beside it is rendered by the portal
// itself (POST /api/preview, the same renderer and HTML allow-list the
// published page uses), so what is shown is what visitors will get.
// Without JavaScript the preview is the one of the last save.
"use strict";
(function () {
  function start(area) {
    var target = document.getElementById(area.getAttribute("data-preview"));
    var form = area.form;
    var tokenField = form && form.querySelector('input[name="csrf"]');
    if (!target || !tokenField) return;
    var timer = null, seq = 0;
    function render() {
      var mine = ++seq;
      fetch("/api/preview", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": tokenField.value },
        body: JSON.stringify({ markdown: area.value })
      }).then(function (r) {
        return r.ok ? r.json() : null;
      }).then(function (j) {
        // the HTML comes from the server's allow-list; an older answer never replaces a newer one
        if (j && typeof j.html === "string" && mine === seq) target.innerHTML = j.html;
      }).catch(function () { /* the last preview stays */ });
    }
    area.addEventListener("input", function () {
      if (timer) clearTimeout(timer);
      timer = setTimeout(render, 250);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-preview]").forEach(start);
  });
})();
