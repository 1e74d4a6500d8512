// riskpipe console: keyboard moves in the review queue. Everything works without it.
// j / k: next / previous case; Enter on a case opens it (it is a link); "/": the filters.
(function () {
  "use strict";
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    var typing = target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName);
    if (typing || event.ctrlKey || event.metaKey || event.altKey) { return; }
    var links = Array.prototype.slice.call(document.querySelectorAll("#queue a.case-link"));
    if (event.key === "/") {
      var first = document.querySelector(".filters select, .filters input");
      if (first) { event.preventDefault(); first.focus(); }
      return;
    }
    if (!links.length || (event.key !== "j" && event.key !== "k")) { return; }
    event.preventDefault();
    var at = links.indexOf(document.activeElement);
    var next = event.key === "j" ? Math.min(at + 1, links.length - 1) : Math.max(at - 1, 0);
    links.forEach(function (a) { a.closest("tr").classList.remove("current"); });
    links[next].focus();
    links[next].closest("tr").classList.add("current");
  });
}());
