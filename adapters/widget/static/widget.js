/*! deskbell visitor widget.
 * Embed: <script src="{BASE}/widget.js" data-widget="{widget key}" async></script>
 * Vanilla ES2018, no dependencies, no third-party requests. Everything lives in
 * an open shadow root so the host page's CSS cannot reach it, and every string
 * from the server is inserted as text, never as HTML.
 */
(function () {
  "use strict";

  // The tag may be pasted twice (theme + tag manager): the first copy wins.
  if (window.deskbell && window.deskbell.state) return;

  // currentScript is only set while this file first runs, so read it now.
  const script = document.currentScript || document.querySelector("script[data-widget]");
  const KEY = script && script.getAttribute("data-widget");
  if (!KEY || !script.src) {
    console.warn("deskbell: the widget script needs a src and a data-widget attribute");
    return;
  }
  const BASE = script.src.replace(/[?#].*$/, "").replace(/\/[^/]*$/, "");
  const WIDGET_URL = BASE + "/widget/" + encodeURIComponent(KEY);

  const MAX_CHAT = 4000;
  const MAX_FORM = 5000;
  const CHAT_MODES = ["live", "ai"];
  const MODES = CHAT_MODES.concat(["form", "hidden"]);
  const SOUND_DEFAULT = script.getAttribute("data-sound") === "on"; // off unless the site asks

  // ---------------------------------------------------------------- languages

  // Every visible string, per language; the browser's language picks one and
  // missing keys fall back to English. Texts the admin wrote (custom_texts in
  // the config) are shown as written, whatever the language.
  const L = {
    en: {
      on: "Chat with us", off: "Leave a message", msg: "We're away right now. Leave a message and we'll get back to you by email.",
      ph: "Type your message…", your: "Your message", send: "Send", close: "Close chat", conn: "Connecting…",
      hint: "Send us a message and we'll reply right here.", log: "Messages", name: "Name", email: "Email", message: "Message",
      sendMsg: "Send message", sending: "Sending…", again: "Send another message",
      thanks: "Thanks! We got your message and will get back to you by email.", write: "Please write a message.",
      net: "We couldn't send your message. Check your connection and try again.", wrong: "Something went wrong. Please try again.",
      you: "You", support: "Support", bot: "Assistant", closed: "This conversation was closed.", failed: "Not delivered",
      typing: "{n} is typing…", back: "Back {n} (your time)", unread: "{n} unread", sound: "Sound for new replies",
    },
    es: {
      on: "Chatea con nosotros", off: "Déjanos un mensaje", msg: "Ahora no estamos. Déjanos un mensaje y te responderemos por email.",
      ph: "Escribe tu mensaje…", your: "Tu mensaje", send: "Enviar", close: "Cerrar chat", conn: "Conectando…",
      hint: "Escríbenos y te responderemos aquí mismo.", log: "Mensajes", name: "Nombre", email: "Email", message: "Mensaje",
      sendMsg: "Enviar mensaje", sending: "Enviando…", again: "Enviar otro mensaje",
      thanks: "¡Gracias! Hemos recibido tu mensaje y te responderemos por email.", write: "Escribe un mensaje.",
      net: "No pudimos enviar tu mensaje. Revisa tu conexión e inténtalo de nuevo.", wrong: "Algo salió mal. Inténtalo de nuevo.",
      you: "Tú", support: "Soporte", bot: "Asistente", closed: "Esta conversación se ha cerrado.", failed: "No entregado",
      typing: "{n} está escribiendo…", back: "Volvemos el {n} (tu hora)", unread: "{n} sin leer", sound: "Sonido para respuestas nuevas",
    },
    fr: {
      on: "Discutons", off: "Laissez un message", msg: "Nous sommes absents. Laissez un message et nous vous répondrons par e-mail.",
      ph: "Votre message…", your: "Votre message", send: "Envoyer", close: "Fermer le chat", conn: "Connexion…",
      hint: "Écrivez-nous, nous répondons ici même.", log: "Messages", name: "Nom", email: "E-mail", message: "Message",
      sendMsg: "Envoyer le message", sending: "Envoi…", again: "Envoyer un autre message",
      thanks: "Merci ! Nous avons reçu votre message et vous répondrons par e-mail.", write: "Veuillez écrire un message.",
      net: "Impossible d'envoyer votre message. Vérifiez votre connexion et réessayez.", wrong: "Une erreur s'est produite. Réessayez.",
      you: "Vous", support: "Support", bot: "Assistant", closed: "Cette conversation est terminée.", failed: "Non distribué",
      typing: "{n} écrit…", back: "De retour {n} (votre heure)", unread: "{n} non lu(s)", sound: "Son pour les nouvelles réponses",
    },
    de: {
      on: "Chatten Sie mit uns", off: "Nachricht hinterlassen", msg: "Wir sind gerade nicht da. Hinterlassen Sie eine Nachricht, wir antworten per E-Mail.",
      ph: "Ihre Nachricht…", your: "Ihre Nachricht", send: "Senden", close: "Chat schließen", conn: "Verbinde…",
      hint: "Schreiben Sie uns, wir antworten direkt hier.", log: "Nachrichten", name: "Name", email: "E-Mail", message: "Nachricht",
      sendMsg: "Nachricht senden", sending: "Wird gesendet…", again: "Weitere Nachricht senden",
      thanks: "Danke! Wir haben Ihre Nachricht erhalten und antworten per E-Mail.", write: "Bitte schreiben Sie eine Nachricht.",
      net: "Ihre Nachricht konnte nicht gesendet werden. Prüfen Sie die Verbindung und versuchen Sie es erneut.", wrong: "Etwas ist schiefgegangen. Bitte erneut versuchen.",
      you: "Sie", support: "Support", bot: "Assistent", closed: "Diese Unterhaltung wurde beendet.", failed: "Nicht zugestellt",
      typing: "{n} schreibt…", back: "Zurück am {n} (Ihre Zeit)", unread: "{n} ungelesen", sound: "Ton bei neuen Antworten",
    },
    pt: {
      on: "Fale conosco", off: "Deixe uma mensagem", msg: "Não estamos disponíveis agora. Deixe uma mensagem e responderemos por e-mail.",
      ph: "Escreva sua mensagem…", your: "Sua mensagem", send: "Enviar", close: "Fechar chat", conn: "Conectando…",
      hint: "Envie uma mensagem e responderemos aqui mesmo.", log: "Mensagens", name: "Nome", email: "E-mail", message: "Mensagem",
      sendMsg: "Enviar mensagem", sending: "Enviando…", again: "Enviar outra mensagem",
      thanks: "Obrigado! Recebemos sua mensagem e responderemos por e-mail.", write: "Escreva uma mensagem.",
      net: "Não foi possível enviar sua mensagem. Verifique a conexão e tente novamente.", wrong: "Algo deu errado. Tente novamente.",
      you: "Você", support: "Suporte", bot: "Assistente", closed: "Esta conversa foi encerrada.", failed: "Não entregue",
      typing: "{n} está digitando…", back: "Voltamos {n} (seu horário)", unread: "{n} não lida(s)", sound: "Som para novas respostas",
    },
  };
  const LANGS = [].concat(navigator.languages || [], navigator.language || [], "en").map((l) => String(l));
  const TAG = LANGS.find((l) => L[l.slice(0, 2).toLowerCase()]);
  const LANG = TAG.slice(0, 2).toLowerCase();
  const t = (k, n) => String(L[LANG][k] || L.en[k]).replace("{n}", n);

  // ---------------------------------------------------------------- storage

  // localStorage can throw (private mode, blocked cookies): fall back to memory
  // for this page view, so the widget still works, it just forgets on reload.
  const memory = {};
  const store = {
    get(name) {
      if (name in memory) return memory[name];
      try { return localStorage.getItem("deskbell:" + KEY + ":" + name); } catch (e) { return null; }
    },
    set(name, value) {
      memory[name] = value == null ? null : String(value);
      try {
        const k = "deskbell:" + KEY + ":" + name;
        if (value == null) localStorage.removeItem(k); else localStorage.setItem(k, String(value));
      } catch (e) { /* memory only */ }
    },
  };

  function loadPending() {
    try {
      const list = JSON.parse(store.get("pending") || "[]");
      return Array.isArray(list) ? list.filter((p) => p && p.client_id && p.text) : [];
    } catch (e) { return []; }
  }

  // ---------------------------------------------------------------- state

  function newConversation(id) {
    return { id: id == null ? null : String(id), lastSeq: 0, seqs: new Set(), ids: new Set(), closed: false };
  }

  const S = {
    cfg: null,
    status: null,
    mode: null,
    rendered: null, // the mode the UI last showed
    isOpen: false,
    unread: 0, // replies that arrived while the panel was closed or the tab hidden
    formSent: false,
    ws: null,
    ready: false, // socket open and the server said welcome
    attempt: 0,
    retryTimer: 0,
    restartUntil: 0, // the server said it is restarting: retry at a steady pace until then
    typingSentAt: 0,
    typingIdleTimer: 0,
    agentTypingTimer: 0,
    conv: newConversation(store.get("conversation_id")),
    // Visitor messages not yet acknowledged, oldest first; kept across page
    // loads and re-sent with the same client_id (the server deduplicates).
    pending: loadPending(),
  };
  const ui = {};

  // ---------------------------------------------------------------- helpers

  // Builds an element; "text" sets textContent, on* adds listeners, children
  // may be nodes or strings (strings become text nodes, never markup).
  function h(tag, attrs, kids) {
    const el = document.createElement(tag);
    for (const k in attrs || {}) {
      const v = attrs[k];
      if (v == null || v === false) continue;
      if (k === "text") el.textContent = v;
      else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of [].concat(kids || [])) if (kid != null) el.append(kid);
    return el;
  }

  function icon(d) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", d);
    svg.append(path);
    return svg;
  }

  function uid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  // Exponential backoff with jitter: 0.5 s doubling up to 30 s, then 50-100 %.
  function backoff(attempt) {
    const d = Math.min(30000, 500 * 2 ** attempt);
    return d / 2 + Math.random() * (d / 2);
  }

  // An https page cannot talk to ws:// or http:// (mixed content); a server
  // behind a TLS proxy may still advertise them, so upgrade when we came over https.
  function secure(url) {
    return /^https:/i.test(BASE) ? String(url).replace(/^(ws|http):/i, "$1s:") : String(url);
  }

  function isChat() { return CHAT_MODES.includes(S.mode); }

  // Default texts in the visitor's language; the admin's own (custom_texts) as written.
  function texts() {
    const c = S.cfg || {};
    const own = c.texts || {};
    const out = { online_tab_text: t("on"), offline_tab_text: t("off"), offline_message: t("msg") };
    for (const k in out) if (own[k] && (!c.custom_texts || c.custom_texts.includes(k))) out[k] = own[k];
    return out;
  }

  // ---------------------------------------------------------------- colours

  function parseHex(c) {
    const m = /^#?([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(String(c || "").trim());
    if (!m) return null;
    const s = m[1].length === 3 ? m[1].replace(/./g, "$&$&") : m[1];
    return [0, 2, 4].map((i) => parseInt(s.substr(i, 2), 16));
  }

  function luminance(rgb) {
    const lin = rgb.map((v) => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
  }

  function contrast(a, b) {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  }

  // Only hex colours reach the stylesheet (no CSS injection), and the text
  // colour is swapped for white/dark when the configured pair is unreadable.
  function applyColors(colors) {
    const c = colors || {};
    const primary = parseHex(c.primary) || parseHex("#2563eb");
    let text = parseHex(c.text) || [255, 255, 255];
    const white = [255, 255, 255];
    const dark = [17, 24, 39];
    if (contrast(primary, text) < 4.5) text = contrast(primary, white) >= contrast(primary, dark) ? white : dark;
    const css = (rgb) => "rgb(" + rgb.join(",") + ")";
    ui.wrap.style.setProperty("--db-p", css(primary));
    ui.wrap.style.setProperty("--db-t", css(text));
    // Focus rings must show on the white panel even with a pale brand colour.
    ui.wrap.style.setProperty("--db-ring", css(contrast(primary, white) >= 3 ? primary : dark));
  }

  // ---------------------------------------------------------------- styles

  const CSS = `
:host{all:initial!important}
*,*::before,*::after{box-sizing:border-box}
[hidden]{display:none!important}
.w{position:fixed;bottom:20px;right:20px;z-index:2147483647;display:flex;flex-direction:column;align-items:flex-end;gap:12px;
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#111827;text-align:start}
.w.left{right:auto;left:20px;align-items:flex-start}
button,input,textarea{font:inherit;color:inherit;margin:0;letter-spacing:normal}
button{cursor:pointer}
:focus{outline:none}
:focus-visible{outline:2px solid var(--db-ring);outline-offset:2px}
svg{width:20px;height:20px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round;flex:none}
.launch{position:relative;display:flex;align-items:center;gap:8px;border:0;border-radius:999px;padding:12px 18px;background:var(--db-p);color:var(--db-t);
font-weight:600;box-shadow:0 6px 20px rgba(0,0,0,.2);transition:transform .15s}
.launch:hover{transform:translateY(-1px)}
.badge{position:absolute;top:-6px;right:-6px;min-width:20px;height:20px;padding:0 5px;border-radius:10px;background:#b91c1c;color:#fff;
font:700 12px/20px system-ui,sans-serif;text-align:center;box-shadow:0 0 0 2px #fff}
.back{margin:0 0 8px;font-weight:600;color:#1f2937}
.panel{width:360px;height:min(560px,calc(100vh - 110px));display:flex;flex-direction:column;background:#fff;border-radius:12px;
box-shadow:0 12px 40px rgba(0,0,0,.22);overflow:hidden}
.head{display:flex;align-items:center;justify-content:space-between;gap:8px;padding:14px 12px 14px 16px;background:var(--db-p);color:var(--db-t)}
.title{font-weight:600;font-size:15px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.x{display:flex;border:0;background:transparent;color:inherit;padding:4px;border-radius:6px}
.x[aria-pressed=true] .sl{display:none}
.tools{display:flex;gap:2px}
.x:focus-visible{outline-color:currentColor;outline-offset:0}
.conn{background:#fef3c7;color:#92400e;font-size:12px;padding:6px 16px;text-align:center}
.body{position:relative;flex:1;overflow-y:auto;padding:16px;display:flex;flex-direction:column;gap:16px}
.hint{margin:auto 0;color:#64748b;text-align:center}
.log{display:flex;flex-direction:column;gap:4px}
.log:empty{display:none}
.m{max-width:82%;display:flex;flex-direction:column;align-items:flex-start;margin-top:6px}
.m.cont{margin-top:0}
.m.v{align-self:flex-end;align-items:flex-end}
.who{display:flex;align-items:center;gap:6px;font-size:12px;color:#64748b;margin:0 4px 2px}
.cont .who{display:none}
.av{width:18px;height:18px;border-radius:50%;object-fit:cover}
.b{padding:8px 12px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere;background:#f1f5f9;border-end-start-radius:4px}
.v .b{background:var(--db-p);color:var(--db-t);border-radius:14px;border-end-end-radius:4px}
.b a{color:inherit;text-decoration:underline}
.pend{opacity:.55}
.fail .b{opacity:.6}
.fail .who{display:flex;color:#b91c1c}
.sys{align-self:center;max-width:90%;margin:8px 0;color:#64748b;font-size:12px;text-align:center}
.typing{padding:0 16px 6px;color:#64748b;font-size:12px;font-style:italic}
.compose{display:flex;align-items:flex-end;gap:8px;padding:10px;border-top:1px solid #e5e7eb}
textarea,input{display:block;width:100%;border:1px solid #d1d5db;border-radius:8px;padding:8px 10px;background:#fff;line-height:1.4}
textarea{resize:none}
.compose textarea{flex:1;max-height:120px}
textarea:focus-visible,input:focus-visible{outline-offset:0;border-color:var(--db-ring)}
.acts{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px}
.act{display:inline-block;text-decoration:none}
.send,.submit,.act{border:0;border-radius:8px;padding:8px 14px;background:var(--db-p);color:var(--db-t);font-weight:600}
.send:disabled,.submit:disabled{opacity:.5;cursor:default}
.off p{margin:0 0 4px}
.f label{display:block;margin:12px 0 4px;font-size:12px;font-weight:600;color:#374151}
.f .submit{margin-top:14px;width:100%;padding:10px}
.f [aria-invalid=true]{border-color:#b91c1c}
.err{display:block;margin-top:4px;color:#b91c1c;font-size:12px}
.err:empty{display:none}
.hp{position:absolute!important;left:-10000px!important;width:1px;height:1px;overflow:hidden}
.note{margin:12px 0 0;padding:10px 12px;border-radius:8px;background:#ecfdf5;color:#065f46}
.note.bad{background:#fef2f2;color:#991b1b}
.note:empty{display:none}
.again{margin-top:8px;border:0;background:none;padding:0;color:inherit;text-decoration:underline;font-size:12px}
@media (max-width:480px){
.panel{position:fixed;inset:0;width:100%;height:100%;border-radius:0;padding-bottom:env(safe-area-inset-bottom)}
.w.open .launch{display:none}
textarea,input{font-size:16px}
}
@media (prefers-reduced-motion:reduce){.launch{transition:none}}
`;

  // ---------------------------------------------------------------- building the UI

  function buildUI() {
    const host = document.createElement("deskbell-widget");
    const root = host.attachShadow({ mode: "open" });

    ui.label = h("span", { dir: "auto" });
    ui.badge = h("span", { class: "badge", "aria-hidden": "true", hidden: true });
    ui.launch = h("button", {
      class: "launch", type: "button", "aria-expanded": "false", "aria-controls": "db-panel", "aria-haspopup": "dialog",
      onclick: () => (S.isOpen ? close(true) : open()),
    }, [icon("M21 12a8 8 0 0 1-11.7 7.1L4 20l1.1-4.6A8 8 0 1 1 21 12z"), ui.label, ui.badge]);

    ui.title = h("span", { class: "title", dir: "auto" });
    // The bell is struck through while the sound is off (the default).
    const bell = icon("M6 8a6 6 0 0 1 12 0c0 7 3 9 3 9H3s3-2 3-9M10.3 21a1.9 1.9 0 0 0 3.4 0");
    bell.append(icon("M3 3l18 18").firstChild);
    bell.lastChild.setAttribute("class", "sl");
    ui.sound = h("button", { class: "x", type: "button", "aria-label": t("sound"), "aria-pressed": String(soundOn()), onclick: toggleSound }, bell);
    ui.close = h("button", { class: "x", type: "button", "aria-label": t("close"), onclick: () => close(true) },
      icon("M6 6l12 12M18 6L6 18"));
    ui.conn = h("div", { class: "conn", role: "status", text: t("conn"), hidden: true });
    ui.log = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": t("log") });
    ui.hint = h("p", { class: "hint", text: t("hint") });
    ui.back = h("p", { class: "back", hidden: true });
    ui.off = buildOffline();
    ui.body = h("div", { class: "body" }, [ui.back, ui.hint, ui.log, ui.off]);
    ui.typing = h("div", { class: "typing", "aria-hidden": "true", hidden: true });
    ui.compose = buildCompose();
    ui.panel = h("div", { class: "panel", id: "db-panel", role: "dialog", hidden: true },
      [h("div", { class: "head" }, [ui.title, h("div", { class: "tools" }, [ui.sound, ui.close])]), ui.conn, ui.body, ui.typing, ui.compose]);

    ui.wrap = h("div", { class: "w", hidden: true, lang: TAG, dir: /^(ar|he|fa|ur)/.test(LANG) ? "rtl" : "ltr" }, [ui.panel, ui.launch]);
    root.append(h("style", { text: CSS }), ui.wrap);
    root.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && S.isOpen) close(true);
      if (e.key === "Tab" && S.isOpen && FULL.matches) trapFocus(e, root);
    });
    document.documentElement.append(host); // not body: a transform on body would re-anchor position:fixed
  }

  function buildCompose() {
    ui.input = h("textarea", {
      rows: 1, maxlength: MAX_CHAT, placeholder: t("ph"), "aria-label": t("your"), dir: "auto",
      oninput: onInput, onkeydown: onComposeKey,
    });
    ui.send = h("button", { class: "send", type: "submit", text: t("send") });
    return h("form", { class: "compose", onsubmit: (e) => { e.preventDefault(); submitChat(); } }, [ui.input, ui.send]);
  }

  function field(name, label, control) {
    const err = h("span", { class: "err", id: "db-err-" + name });
    control.id = "db-f-" + name;
    control.setAttribute("aria-describedby", err.id);
    ui.fields[name] = { control, err };
    return h("div", null, [h("label", { for: control.id, text: label }), control, err]);
  }

  function buildOffline() {
    ui.fields = {};
    ui.offMsg = h("p", { dir: "auto" });
    ui.note = h("p", { class: "note", role: "status", "aria-live": "polite" });
    ui.again = h("button", { class: "again", type: "button", text: t("again"), hidden: true, onclick: () => {
      S.formSent = false;
      setNote("");
      render();
    } });
    ui.submit = h("button", { class: "submit", type: "submit", text: t("sendMsg") });
    // Honeypot: off-screen and out of the tab order; people leave it empty, bots fill it.
    ui.honeypot = h("input", { type: "text", name: "website", tabindex: "-1", autocomplete: "off" });
    ui.form = h("form", { class: "f", novalidate: true, onsubmit: submitForm }, [
      field("name", t("name"), h("input", { type: "text", name: "name", autocomplete: "name", maxlength: 200, dir: "auto" })),
      field("email", t("email"), h("input", { type: "email", name: "email", autocomplete: "email", maxlength: 320, required: true })),
      field("message", t("message"), h("textarea", { name: "message", rows: 4, required: true, maxlength: MAX_FORM, dir: "auto" })),
      h("div", { class: "hp", "aria-hidden": "true" }, [h("label", { text: "Website" }), ui.honeypot]),
      ui.submit,
    ]);
    return h("div", { class: "off" }, [ui.offMsg, ui.form, ui.note, ui.again]);
  }

  // ---------------------------------------------------------------- rendering by mode

  function render() {
    const t = texts();
    const chat = isChat();
    const modeChanged = S.rendered !== S.mode;
    S.rendered = S.mode;
    const title = chat ? t.online_tab_text : t.offline_tab_text;
    ui.wrap.hidden = S.mode === "hidden";
    if (S.mode === "hidden" && S.isOpen) close(false);
    ui.label.textContent = title;
    ui.title.textContent = title;
    ui.panel.setAttribute("aria-label", title);
    const back = backText(S.status);
    ui.back.textContent = back;
    ui.back.hidden = !back;
    renderBadge();
    ui.wrap.classList.toggle("left", S.cfg.position === "left");
    // In form mode an ongoing conversation stays visible above the form.
    ui.off.hidden = chat && !S.showForm;
    ui.offMsg.hidden = chat; // the assistant speaks in chat mode: no "we're away" notice beside it
    ui.compose.hidden = !chat;
    ui.offMsg.textContent = t.offline_message;
    ui.form.hidden = !S.cfg.offline_form || S.formSent;
    ui.again.hidden = !S.cfg.offline_form || !S.formSent;
    ui.hint.hidden = !chat || ui.log.children.length > 0;
    if (!chat) hideAgentTyping();
    // Gone offline mid-conversation: bring the offline message into view.
    if (modeChanged && !chat && S.isOpen) ui.body.scrollTop = ui.off.offsetTop - 16;
    renderConnection();
  }

  function renderConnection() {
    ui.conn.hidden = S.ready || !isChat();
  }

  function open() {
    if (!S.cfg || S.mode === "hidden") return;
    S.isOpen = true;
    S.unread = 0;
    renderBadge();
    ui.panel.hidden = false;
    if (FULL.matches) ui.panel.setAttribute("aria-modal", "true");
    else ui.panel.removeAttribute("aria-modal");
    ui.wrap.classList.add("open");
    ui.launch.setAttribute("aria-expanded", "true");
    scrollDown(true);
    const first = isChat() ? ui.input : !ui.form.hidden ? ui.fields.name.control : ui.close;
    first.focus();
  }

  function close(focusLauncher) {
    if (!S.isOpen) return;
    S.isOpen = false;
    ui.panel.hidden = true;
    ui.wrap.classList.remove("open");
    ui.launch.setAttribute("aria-expanded", "false");
    if (focusLauncher && !ui.wrap.hidden) ui.launch.focus();
  }

  // On a phone the panel covers the page: Tab cycles inside it like any modal dialog.
  const FULL = window.matchMedia("(max-width:480px)");

  function trapFocus(e, root) {
    const all = Array.from(ui.panel.querySelectorAll("button,textarea,input:not([tabindex='-1']),a[href]"))
      .filter((el) => !el.disabled && !el.closest("[hidden]"));
    const first = all[0];
    const last = all[all.length - 1];
    if (!first) return;
    const at = root.activeElement;
    if (e.shiftKey ? at === first || !ui.panel.contains(at) : at === last) {
      e.preventDefault();
      (e.shiftKey ? last : first).focus();
    }
  }

  // ---------------------------------------------------------------- unread badge, sound, "back at"

  function renderBadge() {
    const n = S.unread;
    ui.badge.hidden = !n;
    ui.badge.textContent = !n ? "" : n > 9 ? "9+" : String(n);
    if (n) ui.launch.setAttribute("aria-label", ui.label.textContent + ", " + t("unread", n));
    else ui.launch.removeAttribute("aria-label");
  }

  function soundOn() {
    const saved = store.get("sound");
    return saved == null ? SOUND_DEFAULT : saved === "1";
  }

  function toggleSound() {
    store.set("sound", soundOn() ? "0" : "1");
    ui.sound.setAttribute("aria-pressed", String(soundOn()));
  }

  // A short soft tone, made here (no audio file to fetch); only when switched on.
  function ding() {
    if (!soundOn()) return;
    try {
      const ctx = S.audio || (S.audio = new (window.AudioContext || window.webkitAudioContext)());
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.06, ctx.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + 0.25);
      osc.connect(gain).connect(ctx.destination);
      osc.start();
      osc.stop(ctx.currentTime + 0.25);
    } catch (e) { /* no audio here */ }
  }

  // A reply the visitor has not seen: the panel is closed or the tab is in the background.
  function countUnread(f) {
    if (f.replay || (f.from !== "agent" && f.from !== "bot")) return;
    if (S.isOpen && !document.hidden) return;
    S.unread++;
    renderBadge();
    ding();
  }

  // "Back Monday 09:00 (your time)": the next opening in the visitor's own zone and language.
  function backText(st) {
    const at = st && !st.online && st.next_open_at ? new Date(st.next_open_at) : null;
    if (!at || isNaN(at)) return "";
    const o = { weekday: "long", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (at - Date.now() > 6 * 864e5) Object.assign(o, { day: "numeric", month: "long" });
    let when;
    try { when = new Intl.DateTimeFormat(TAG, o).format(at); } catch (e) { when = at.toLocaleString(); }
    return t("back", when);
  }

  function scrollDown(force) {
    const b = ui.body;
    if (force || b.scrollHeight - b.scrollTop - b.clientHeight < 120) b.scrollTop = b.scrollHeight;
  }

  // ---------------------------------------------------------------- messages

  const URL_RE = /\bhttps?:\/\/[^\s<>"]+/gi;

  // Plain text with http(s) URLs turned into <a> elements; everything else
  // stays a text node.
  function linkify(text) {
    const out = [];
    let last = 0;
    let m;
    URL_RE.lastIndex = 0;
    while ((m = URL_RE.exec(text))) {
      const url = m[0].replace(/[.,;:!?)\]'}]+$/, "");
      let ok = false;
      try { ok = /^https?:$/.test(new URL(url).protocol); } catch (e) { /* not a URL */ }
      if (!ok) continue;
      out.push(text.slice(last, m.index), h("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: url }));
      last = m.index + url.length;
      URL_RE.lastIndex = last;
    }
    out.push(text.slice(last));
    return out;
  }

  function avatar(url) {
    if (!url || !/^https:\/\//i.test(url)) return null;
    const img = h("img", { class: "av", src: url, alt: "", referrerpolicy: "no-referrer", loading: "lazy" });
    img.onerror = () => img.remove();
    return img;
  }

  function timeTitle(ts) {
    const d = ts ? new Date(ts) : null;
    return d && !isNaN(d) ? d.toLocaleString() : null;
  }

  function messageEl(m) {
    const text = String(m.text == null ? "" : m.text);
    if (m.from === "system") return h("div", { class: "sys", text });
    const mine = m.from === "visitor";
    const author = mine ? t("you") : m.author || t(m.from === "bot" ? "bot" : "support");
    const el = h("div", { class: "m " + (mine ? "v" : "a") }, [
      h("div", { class: "who" }, mine ? null : [avatar(m.avatar_url), author]),
      h("div", { class: "b", dir: "auto", title: timeTitle(m.ts) }, mine ? text : linkify(text)),
      m.from === "bot" ? actionsEl(m.actions) : null,
    ]);
    el.dataset.who = m.from + ":" + author;
    return el;
  }

  // The assistant's offers: a link button, or the offline form prefilled with what it learned.
  function actionsEl(actions) {
    const out = [];
    for (const a of [].concat(actions || [])) {
      if (a && a.type === "link" && /^https?:\/\//i.test(String(a.url))) {
        out.push(h("a", { class: "act", href: a.url, target: "_blank", rel: "noopener noreferrer", text: a.label || a.url }));
      } else if (a && a.type === "offline_form" && S.cfg.offline_form) {
        out.push(h("button", { class: "act", type: "button", text: texts().offline_tab_text, onclick: () => showForm(a.prefill) }));
      }
    }
    return out.length ? h("div", { class: "acts" }, out) : null;
  }

  function showForm(prefill) {
    S.showForm = true;
    S.formSent = false;
    for (const k in prefill || {}) if (ui.fields[k] && prefill[k]) ui.fields[k].control.value = String(prefill[k]);
    render();
    ui.off.scrollIntoView({ block: "nearest" });
  }

  // Keeps the log in seq order; messages without seq (pending ones) stay last.
  function insertBySeq(el, seq) {
    if (seq != null) el.dataset.seq = seq;
    const before = seq == null ? null
      : Array.from(ui.log.children).find((c) => c.dataset.cid || (c.dataset.seq && +c.dataset.seq > seq));
    ui.log.insertBefore(el, before || null);
    groupWithPrevious(el);
    if (el.nextElementSibling) groupWithPrevious(el.nextElementSibling);
  }

  // Consecutive messages by the same author show the name once.
  function groupWithPrevious(el) {
    const prev = el.previousElementSibling;
    el.classList.toggle("cont", !!(prev && el.dataset.who && prev.dataset.who === el.dataset.who));
  }

  // An agent edited or withdrew a line (in Slack or Teams): follow it by seq.
  function onMessageChange(f) {
    if (String(f.conversation_id) !== S.conv.id) return;
    const el = Array.from(ui.log.children).find((c) => c.dataset.seq === String(f.seq));
    if (!el) return;
    if (f.type === "message_delete") return el.remove();
    const body = el.querySelector(".b");
    if (body) body.replaceChildren(...[].concat(linkify(String(f.text || ""))));
  }

  function addSystem(text) {
    insertBySeq(h("div", { class: "sys", text }), null);
    afterChange();
  }

  function afterChange() {
    render();
    scrollDown(false);
  }

  function seen(seq, id) {
    return (seq != null && S.conv.seqs.has(seq)) || (id != null && S.conv.ids.has(id));
  }

  function remember(seq, id) {
    const c = S.conv;
    if (id != null) c.ids.add(id);
    if (seq == null) return;
    c.seqs.add(seq);
    if (seq > c.lastSeq) c.lastSeq = seq;
  }

  // A different conversation id means a new conversation (the old one was
  // closed): start a fresh list but keep visitor messages still in flight.
  function switchConversation(id) {
    if (id == null || String(id) === S.conv.id) return;
    const had = S.conv.id;
    S.conv = newConversation(id);
    store.set("conversation_id", id);
    if (had == null) return;
    for (const el of Array.from(ui.log.children)) if (!el.dataset.cid) el.remove();
  }

  function onMessage(f) {
    switchConversation(f.conversation_id);
    // Our own message echoed before its ack: confirm the pending copy instead.
    if (f.client_id && pendingEl(f.client_id)) return onAck(f);
    if (seen(f.seq, f.id)) return;
    remember(f.seq, f.id);
    if (f.from !== "visitor") hideAgentTyping();
    insertBySeq(messageEl(f), f.seq);
    countUnread(f);
    afterChange();
  }

  // ---------------------------------------------------------------- sending

  function pendingEl(cid) {
    return Array.from(ui.log.children).find((el) => el.dataset.cid === cid);
  }

  function showPending(p) {
    const el = messageEl({ from: "visitor", text: p.text });
    el.classList.add("pend");
    el.dataset.cid = p.client_id;
    el.title = t("sending");
    insertBySeq(el, null);
  }

  function savePending() {
    store.set("pending", S.pending.length ? JSON.stringify(S.pending) : null);
  }

  function sendPending(p) {
    wsSend({ type: "message", client_id: p.client_id, text: p.text });
  }

  function submitChat() {
    const text = ui.input.value.trim().slice(0, MAX_CHAT);
    if (!text) return;
    const p = { client_id: uid(), text };
    S.pending.push(p);
    savePending();
    showPending(p);
    ui.input.value = "";
    autoGrow();
    stopTyping();
    if (S.ready) sendPending(p);
    afterChange();
    scrollDown(true);
  }

  function onAck(f) {
    switchConversation(f.conversation_id);
    S.pending = S.pending.filter((p) => p.client_id !== f.client_id);
    savePending();
    const el = pendingEl(f.client_id);
    if (!el) return;
    // The message frame for it may have arrived first: then it is on screen already.
    if (seen(f.seq, f.id)) return el.remove();
    remember(f.seq, f.id);
    el.classList.remove("pend");
    el.removeAttribute("title");
    delete el.dataset.cid;
    el.remove();
    insertBySeq(el, f.seq);
  }

  function markFailed(cid) {
    S.pending = S.pending.filter((p) => p.client_id !== cid);
    savePending();
    const el = pendingEl(cid);
    if (!el) return;
    el.classList.replace("pend", "fail");
    delete el.dataset.cid;
    el.firstChild.textContent = t("failed");
  }

  // ---------------------------------------------------------------- typing

  function onComposeKey(e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submitChat();
    }
  }

  function autoGrow() {
    ui.input.style.height = "auto";
    ui.input.style.height = Math.min(ui.input.scrollHeight + 2, 120) + "px";
  }

  // Tell the agent we are typing at most every 3 s; say we stopped after 5 s idle.
  function onInput() {
    autoGrow();
    if (!ui.input.value.trim()) return stopTyping();
    const now = Date.now();
    if (S.ready && now - S.typingSentAt > 3000) {
      wsSend({ type: "typing", active: true });
      S.typingSentAt = now;
    }
    clearTimeout(S.typingIdleTimer);
    S.typingIdleTimer = setTimeout(stopTyping, 5000);
  }

  function stopTyping() {
    clearTimeout(S.typingIdleTimer);
    if (!S.typingSentAt) return;
    S.typingSentAt = 0;
    wsSend({ type: "typing", active: false });
  }

  function onTyping(f) {
    if (f.from === "visitor") return;
    if (!f.active) return hideAgentTyping();
    ui.typing.textContent = t("typing", f.author || t("support"));
    ui.typing.hidden = !isChat();
    // If the "stopped" frame is lost, do not show typing forever.
    clearTimeout(S.agentTypingTimer);
    S.agentTypingTimer = setTimeout(hideAgentTyping, 15000);
  }

  function hideAgentTyping() {
    clearTimeout(S.agentTypingTimer);
    ui.typing.hidden = true;
  }

  // ---------------------------------------------------------------- status

  function modeOf(st) {
    if (MODES.includes(st.mode)) return st.mode;
    if (st.online) return "live";
    return S.cfg.hide_when_offline ? "hidden" : "form";
  }

  function applyStatus(st) {
    if (!st) return;
    S.status = st;
    S.mode = modeOf(st);
    render();
  }

  // ---------------------------------------------------------------- WebSocket

  function wsUrl() {
    if (S.cfg.ws_url) return secure(S.cfg.ws_url);
    return WIDGET_URL.replace(/^http/i, "ws") + "/ws";
  }

  function wsSend(frame) {
    const ws = S.ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  function conversationIdOut() {
    const id = S.conv.id;
    return id == null ? null : /^\d+$/.test(id) ? Number(id) : id;
  }

  function hello() {
    let timezone = null;
    try { timezone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { /* old browser */ }
    return {
      type: "hello",
      token: store.get("token") || null,
      conversation_id: conversationIdOut(),
      resume_after: S.conv.lastSeq,
      page_url: location.href,
      page_title: document.title,
      language: navigator.language || null,
      timezone,
    };
  }

  function connect() {
    clearTimeout(S.retryTimer);
    let ws;
    try { ws = new WebSocket(wsUrl()); } catch (e) { return scheduleReconnect(); }
    S.ws = ws;
    ws.onopen = () => wsSend(hello());
    ws.onmessage = (e) => {
      let f;
      try { f = JSON.parse(e.data); } catch (err) { return; }
      const handle = f && HANDLERS[f.type];
      if (handle) handle(f);
    };
    ws.onclose = (e) => {
      if (S.ws !== ws) return; // replaced on purpose
      S.ws = null;
      S.ready = false;
      renderConnection();
      if (e.code === 1012 || e.code === 1001) S.restartUntil = Date.now() + 60000;
      scheduleReconnect(Date.now() < S.restartUntil ? 1000 + Math.random() * 2000 : null);
    };
  }

  function scheduleReconnect(delay) {
    clearTimeout(S.retryTimer);
    S.retryTimer = setTimeout(connect, delay != null ? delay : backoff(S.attempt++));
  }

  // Server going away (deploy): drop this socket and come back shortly, with
  // jitter so every widget does not reconnect in the same instant. A restart
  // takes seconds, so for a minute failed tries are repeated every 1-3 s
  // (onclose) instead of backing off further and further.
  function onReconnect() {
    const ws = S.ws;
    S.ws = null;
    S.ready = false;
    S.attempt = 0;
    S.restartUntil = Date.now() + 60000;
    if (ws) ws.close();
    renderConnection();
    scheduleReconnect(250 + Math.random() * 2750);
  }

  function onWelcome(f) {
    S.ready = true;
    S.attempt = 0;
    S.restartUntil = 0;
    if (f.token) store.set("token", f.token);
    switchConversation(f.conversation_id);
    applyStatus(f.status);
    // Re-send unacknowledged messages in order, with their original client_id.
    S.pending.forEach(sendPending);
    renderConnection();
  }

  function onConversation(f) {
    if (f.state !== "closed" || S.conv.closed) return;
    if (f.conversation_id != null && S.conv.id != null && String(f.conversation_id) !== S.conv.id) return;
    S.conv.closed = true;
    addSystem(t("closed"));
  }

  // A rate-limited message is kept and tried again later, and so is one that
  // failed on the server's side ("unavailable", said quietly); any other error
  // naming a message (too long, closed...) means it will never be accepted.
  function onError(f) {
    const p = f.client_id && S.pending.find((x) => x.client_id === f.client_id);
    const later = f.code === "unavailable" ? 2000 + Math.random() * 3000 : f.code === "rate_limited" ? 10000 : 0;
    if (p && later) setTimeout(() => S.pending.includes(p) && S.ready && sendPending(p), later);
    else if (p) markFailed(p.client_id);
    if (f.code !== "unavailable") addSystem(f.message || t("wrong"));
  }

  // Settings changed in the dashboard (texts, colours, position): read the config again.
  async function reloadConfig() {
    let cfg = null;
    try { cfg = await (await fetch(WIDGET_URL + "/config", { credentials: "omit" })).json(); } catch (e) { return; }
    if (!cfg || !cfg.key) return;
    S.cfg = cfg;
    applyColors(cfg.colors);
    applyStatus(cfg.status);
  }

  const HANDLERS = {
    config: reloadConfig,
    welcome: onWelcome,
    status: (f) => applyStatus(f.status || f),
    message: onMessage,
    ack: onAck,
    typing: onTyping,
    conversation: onConversation,
    error: onError,
    reconnect: onReconnect,
    message_update: onMessageChange,
    message_delete: onMessageChange,
  };

  // ---------------------------------------------------------------- offline form

  function setNote(text, bad) {
    ui.note.textContent = text || "";
    ui.note.classList.toggle("bad", !!bad);
  }

  function setFieldErrors(errors) {
    for (const name in ui.fields) {
      const f = ui.fields[name];
      const msg = errors[name];
      f.err.textContent = msg ? String(msg) : "";
      if (msg) f.control.setAttribute("aria-invalid", "true"); else f.control.removeAttribute("aria-invalid");
    }
    const first = Object.keys(ui.fields).find((n) => errors[n]);
    if (first) ui.fields[first].control.focus();
  }

  function formData() {
    const v = (n) => ui.fields[n].control.value.trim();
    return { name: v("name"), email: v("email"), message: v("message"), page_url: location.href, website: ui.honeypot.value };
  }

  async function submitForm(e) {
    e.preventDefault();
    const data = formData();
    setNote("");
    setFieldErrors({});
    if (!data.message) return setFieldErrors({ message: t("write") });
    ui.submit.disabled = true;
    ui.submit.textContent = t("sending");
    let res = null;
    let body = {};
    try {
      res = await fetch(secure(S.cfg.offline_messages_url || WIDGET_URL + "/offline-messages"), {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data), credentials: "omit",
      });
      body = await res.json().catch(() => ({}));
    } catch (err) { /* network error: res stays null */ }
    ui.submit.disabled = false;
    ui.submit.textContent = t("sendMsg");
    showFormResult(res, body || {});
  }

  function showFormResult(res, body) {
    const error = body.error || {};
    if (!res) return setNote(t("net"), true);
    if (res.ok) {
      S.formSent = true;
      ui.form.reset();
      setNote(t("thanks"));
      render();
      return ui.again.hidden ? null : ui.note.focus();
    }
    setNote(error.message || t("wrong"), true);
    if (res.status === 422) setFieldErrors(error.fields || {});
  }

  // ---------------------------------------------------------------- start

  async function loadConfig(attempt) {
    let res = null;
    try { res = await fetch(WIDGET_URL + "/config", { credentials: "omit" }); } catch (e) { /* retry below */ }
    if (res && res.status === 404) return console.warn("deskbell: unknown widget key \"" + KEY + "\"; not showing the chat.");
    let cfg = null;
    if (res && res.ok) cfg = await res.json().catch(() => null);
    if (!cfg) return setTimeout(() => loadConfig(attempt + 1), backoff(attempt + 2));
    whenBody(() => start(cfg));
  }

  function whenBody(fn) {
    if (document.body) fn();
    else document.addEventListener("DOMContentLoaded", fn, { once: true });
  }

  function start(cfg) {
    S.cfg = cfg;
    buildUI();
    applyColors(cfg.colors);
    S.pending.forEach(showPending);
    applyStatus(cfg.status || {});
    // Connect now, not on open, so status changes arrive while the panel is closed.
    connect();
    window.addEventListener("online", () => { if (!S.ws) { S.attempt = 0; connect(); } });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && S.isOpen && S.unread) { S.unread = 0; renderBadge(); }
    });
    // "Back Monday 09:00" must not go stale on a page left open: re-render each minute.
    setInterval(() => { if (!ui.back.hidden) render(); }, 60000);
  }

  window.deskbell = {
    open: () => open(),
    close: () => close(true),
    state: () => ({ mode: S.mode, connected: S.ready, conversation_id: conversationIdOut(), last_seq: S.conv.lastSeq, unread: S.unread, lang: LANG }),
  };

  loadConfig(0);
})();
