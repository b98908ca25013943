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

// A select with data-detail="id" shows its chosen option's whole text in that element: on a phone
// a closed select cuts a long option (an end time with its fee and voucher share) short.
document.addEventListener("change", function (event) {
  var select = event.target;
  var target = select.getAttribute && select.getAttribute("data-detail");
  if (target && select.selectedOptions && select.selectedOptions.length) {
    document.getElementById(target).textContent = select.selectedOptions[0].textContent;
  }
});
