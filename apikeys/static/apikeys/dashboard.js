// The dashboard's only script, loaded from a file (no inline code), so a strict
// Content-Security-Policy (script-src 'self') can be set without changes here.
//
// Copy buttons: <button data-copy="ID" data-copy-status="ID" hidden> copies the text of element
// ID to the clipboard and says so in the status element. The button stays hidden without
// JavaScript; the key can still be selected and copied by hand.
"use strict";

(function () {
  function say(status, text) {
    if (status) {
      status.textContent = text;
    }
  }

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copy(button) {
    var source = document.getElementById(button.dataset.copy);
    var status = document.getElementById(button.dataset.copyStatus);
    if (!source) {
      return;
    }
    var text = source.textContent.trim();
    var byHand = function () {
      selectText(source);
      say(status, "Could not copy: the key is selected, copy it with your keyboard or menu.");
    };
    // The Clipboard API exists only in secure contexts (https, or http on localhost).
    if (!navigator.clipboard || !window.isSecureContext) {
      byHand();
      return;
    }
    navigator.clipboard.writeText(text).then(function () {
      say(status, "Copied");
    }, byHand);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        copy(button);
      });
    });
  });
})();
