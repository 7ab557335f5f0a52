// Upload progress for the restore form; everything else is plain htmx attributes.
document.addEventListener("htmx:xhr:progress", function (event) {
  var bar = event.target.querySelector && event.target.querySelector(".upload-progress");
  if (bar && event.detail.lengthComputable) {
    bar.hidden = false;
    bar.value = Math.round(event.detail.loaded * 100 / event.detail.total);
  }
});

// A new upload or a new "Restore…" replaces the review on screen at once: a review of another archive,
// with its live "Restore now" form, must never stay visible while the new one is being checked.
document.addEventListener("htmx:beforeRequest", function (event) {
  var target = event.detail.target;
  var source = event.detail.elt;
  if (!target || target.id !== "restore-status" || !source || source.closest("#restore-status")) {
    return;
  }
  var note = document.createElement("p");
  note.className = "muted";
  note.setAttribute("data-checking", "");
  note.textContent = source.matches("[data-action=upload]") || source.querySelector("[data-action=upload]")
    ? "Uploading the file; it is checked as soon as it has arrived…"
    : "Checking the archive…";
  target.replaceChildren(note);
});
