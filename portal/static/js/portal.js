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
// A form shown again after a failed submit opens with its error summary focused (macros.html
// form_errors), so a screen reader reads what went wrong before anything else.
document.addEventListener("DOMContentLoaded", function () {
  var summary = document.getElementById("error-summary");
  if (summary) {
    summary.focus();
  }
});

// Escape closes the open mobile menu and gives the focus back to its toggle button.
document.addEventListener("keydown", function (event) {
  if (event.key !== "Escape") {
    return;
  }
  var menu = document.querySelector(".navbar-collapse.show");
  if (!menu || !window.bootstrap) {
    return;
  }
  window.bootstrap.Collapse.getOrCreateInstance(menu).hide();
  var toggle = document.querySelector('[data-bs-target="#' + menu.id + '"]');
  if (toggle) {
    toggle.focus();
  }
});

// A table too wide for the screen scrolls inside its box (.table-responsive): the box joins the tab
// order while it overflows, so keyboard users can scroll it too (WCAG 2.1.1).
function focusableScrollBoxes() {
  document.querySelectorAll(".table-responsive, .chart-scroll").forEach(function (box) {
    if (box.scrollWidth > box.clientWidth) {
      box.setAttribute("tabindex", "0");
    } else if (!box.hasAttribute("data-always-focusable")) {
      box.removeAttribute("tabindex");
    }
  });
}
document.addEventListener("DOMContentLoaded", focusableScrollBoxes);
window.addEventListener("resize", focusableScrollBoxes);
