// Irreversible actions ask first: a form with data-confirm="…" is submitted only when the user
// agrees. Served as a file (the Content-Security-Policy allows no inline script).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var submitter = event.submitter;
  var message = (submitter && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});
