/* deskbell dashboard: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // Copy buttons: <button data-copy="ID"> copies the text of #ID.
  $$("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      const note = button.nextElementSibling;
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        if (note) note.textContent = "Copied.";
      } catch (e) {
        const range = document.createRange();
        range.selectNodeContents(source);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        if (note) note.textContent = "Selected: press Ctrl+C to copy.";
      }
    });
  });

  // Destructive forms ask first.
  $$("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (e) => {
      if (!window.confirm(form.dataset.confirm)) e.preventDefault();
    });
  });

  // Text presets fill the fields in place (the server does it without JavaScript).
  const apply = $("[data-apply-preset]");
  if (apply) {
    apply.addEventListener("click", (e) => {
      e.preventDefault();
      const opt = $("[data-presets]").selectedOptions[0];
      const set = (id, value) => {
        const field = document.getElementById(id);
        field.value = value === field.dataset.default ? "" : value;
      };
      set("online_tab_text", opt.dataset.online);
      set("offline_tab_text", opt.dataset.offline);
      set("offline_message", opt.dataset.message);
      document.getElementById("online_tab_text").focus();
    });
  }

  // Colour pair: swatch and WCAG contrast as you pick.
  const primary = $("#primary");
  const textColor = $("#text");
  const note = $("#contrast-note");
  function lum(hex) {
    const v = [1, 3, 5].map((i) => parseInt(hex.substr(i, 2), 16) / 255)
      .map((c) => (c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4)));
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
  }
  function showContrast() {
    const swatch = $("#swatch");
    swatch.style.background = primary.value;
    swatch.style.color = textColor.value;
    const [hi, lo] = [lum(primary.value), lum(textColor.value)].sort((a, b) => b - a);
    const ratio = Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100;
    note.textContent = "Contrast " + ratio + ":1. " + (ratio < 4.5
      ? "Below the 4.5:1 that WCAG AA asks for: the widget will use white or near-black text instead so visitors can read it."
      : "Meets WCAG AA.");
  }
  if (primary && textColor && note) {
    primary.addEventListener("input", showContrast);
    textColor.addEventListener("input", showContrast);
    showContrast();
  }

  // Schedule editor: add/remove rows, and a live preview computed by the server.
  const form = $("#schedule-form");
  if (!form) return;

  function rangeRow(day, dayName) {
    const tpl = $(`tr[data-day="${day}"] .range`);
    const row = tpl.cloneNode(true);
    $$("input", row).forEach((i) => { i.value = ""; });
    row.querySelector("[data-remove-range]").setAttribute("aria-label", "Remove this " + dayName + " range");
    return row;
  }

  form.addEventListener("click", (e) => {
    const t = e.target;
    if (t.matches("[data-add-range]")) {
      const tr = t.closest("tr");
      const row = rangeRow(t.dataset.addRange, tr.querySelector("th").textContent);
      tr.querySelector(".ranges").append(row);
      row.querySelector("input").focus();
    } else if (t.matches("[data-remove-range]")) {
      const list = t.closest(".ranges");
      const row = t.closest(".range");
      if (list.children.length > 1) row.remove();
      else $$("input", row).forEach((i) => { i.value = ""; });
      schedulePreview();
    } else if (t.matches("[data-add-exception]")) {
      const first = $(".exception", form);
      const row = first.cloneNode(true);
      $$("input", row).forEach((i) => { i.value = ""; });
      $("#exceptions").append(row);
      row.querySelector("input").focus();
    } else if (t.matches("[data-remove-exception]")) {
      const row = t.closest(".exception");
      if ($$(".exception", form).length > 1) row.remove();
      else $$("input", row).forEach((i) => { i.value = ""; });
      schedulePreview();
    }
  });

  const always = $("#always_open");
  const fields = $("#schedule-fields");
  function showFields() { fields.classList.toggle("muted", always.checked); }
  always.addEventListener("change", showFields);
  showFields();

  const preview = $("#preview");
  const status = document.createElement("p");
  status.className = "preview-error";
  status.setAttribute("role", "status");
  preview.before(status);
  let timer = 0;
  let seq = 0;
  function schedulePreview() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }
  async function refresh() {
    const mine = ++seq;
    const body = new URLSearchParams(new FormData(form));
    body.delete("do");
    let res;
    try {
      res = await fetch(form.dataset.preview, { method: "POST", body, credentials: "same-origin" });
    } catch (e) {
      return;
    }
    if (mine !== seq) return; // a newer request is on its way
    const text = await res.text();
    if (res.ok) {
      preview.innerHTML = text;
      status.textContent = "";
      preview.classList.remove("stale");
    } else {
      status.textContent = res.status === 422 ? text : "The preview could not be updated.";
      preview.classList.add("stale");
    }
  }
  form.addEventListener("input", schedulePreview);
  form.addEventListener("change", schedulePreview);
})();
