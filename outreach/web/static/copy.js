// The advocacy page's copy buttons: a button with data-copy="ID" copies that field's text
// and says so in the status line (read out by screen readers). Editing the letter updates
// the "open in my email app" link while it stays within what mail clients accept.
(function () {
  var status = document.getElementById("copied");
  function say(text) { if (status) status.textContent = text; }
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.getAttribute("data-copy"));
      if (!field) return;
      var done = function () { say(button.textContent.trim() + " \u2713"); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () { field.select(); document.execCommand("copy"); done(); });
      } else {
        field.select(); document.execCommand("copy"); done();
      }
    });
  });
  var body = document.getElementById("body"), link = document.getElementById("mailto");
  if (body && link) {
    body.addEventListener("input", function () {
      var original = link.getAttribute("data-original"), cut = original.indexOf("&body=");
      if (cut < 0) return;
      var next = original.slice(0, cut) + "&body=" + encodeURIComponent(body.value.replace(/\r?\n/g, "\r\n"));
      link.setAttribute("href", next.length <= 2000 ? next : original);
    });
  }
})();
