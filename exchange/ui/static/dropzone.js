/* Drag and drop for the upload form: a progressive enhancement of each .dropzone.
   Without this script the zone's <input type="file"> works as it is; with it, a file
   dropped anywhere on the zone becomes the input's file, and its name is shown. The
   texts are the page's own (already translated, hidden until this script runs). */
(function () {
  "use strict";

  function enhance(zone) {
    var input = zone.querySelector("input[type=file]");
    if (!input) {
      return;
    }
    var hint = zone.querySelector(".dropzone-hint");
    var chosen = zone.querySelector(".dropzone-chosen");
    var name = zone.querySelector(".dropzone-name");
    if (hint) {
      hint.hidden = false;
    }

    function show() {
      var file = input.files && input.files[0];
      if (chosen && name) {
        name.textContent = file ? file.name : "";
        chosen.hidden = !file;
      }
    }

    function over(event) {
      event.preventDefault();
      if (event.dataTransfer) {
        event.dataTransfer.dropEffect = "copy";
      }
      zone.classList.add("is-dragover");
    }

    function leave(event) {
      if (!event.relatedTarget || !zone.contains(event.relatedTarget)) {
        zone.classList.remove("is-dragover");
      }
    }

    function drop(event) {
      event.preventDefault();
      zone.classList.remove("is-dragover");
      var files = event.dataTransfer && event.dataTransfer.files;
      if (!files || files.length === 0) {
        return;
      }
      try {
        input.files = files;
      } catch (error) {
        return; /* an old browser: the picker still works */
      }
      show();
      input.dispatchEvent(new Event("change", { bubbles: true }));
    }

    zone.addEventListener("dragenter", over);
    zone.addEventListener("dragover", over);
    zone.addEventListener("dragleave", leave);
    zone.addEventListener("drop", drop);
    input.addEventListener("change", show);
  }

  var zones = document.querySelectorAll(".dropzone");
  for (var i = 0; i < zones.length; i += 1) {
    enhance(zones[i]);
  }
}());
