// Portico developer portal: small enhancements only; every page works
// without JavaScript.  Code samples become tabs (curl / Python / JavaScript).
"use strict";
(function () {
  function tabs(box) {
    var samples = box.querySelectorAll("pre.sample");
    if (samples.length < 2) return;
    var bar = document.createElement("div");
    bar.className = "sample-tabs";
    bar.setAttribute("role", "tablist");
    var buttons = [];
    samples.forEach(function (pre, i) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "secondary";
      b.setAttribute("role", "tab");
      b.textContent = pre.getAttribute("data-label") || pre.getAttribute("data-lang");
      b.addEventListener("click", function () { show(i); });
      buttons.push(b);
      bar.appendChild(b);
      var h = pre.previousElementSibling;
      if (h && h.classList.contains("sample-label")) h.hidden = true;
    });
    function show(k) {
      samples.forEach(function (pre, i) { pre.hidden = i !== k; });
      buttons.forEach(function (b, i) { b.setAttribute("aria-selected", i === k ? "true" : "false"); });
    }
    box.insertBefore(bar, samples[0].previousElementSibling || samples[0]);
    box.classList.add("js-tabs");
    show(0);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".samples-body").forEach(tabs);
  });
})();
