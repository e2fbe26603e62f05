/*! Helpdesk website chat widget. Put one tag on any page:
 *   <script src="https://DESK/widget.js" data-desk="https://DESK" async></script>
 * Options (data-*): locale ("en" or "zh-CN"; otherwise the browser's), color, position
 * ("right" or "left"), greeting, name, email.
 *
 * Plain JavaScript, no framework and no CDN. Everything lives in an open shadow root, so
 * the host page's CSS cannot reach it and its CSS cannot reach the page. A session is made
 * on the first message, never on page load, and kept in localStorage, so a reload or
 * another page of the site continues the conversation. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.HelpdeskWidget) return;
  var opts = script.dataset;
  var desk = (opts.desk || new URL(script.src, location.href).origin).replace(/\/+$/, "");

  // ------------------------------------------------------------------ texts
  var TEXTS = {
    en: {
      open: "Open chat", close: "Close chat", title: "Chat with us", conversation: "Conversation",
      input: "Message", send: "Send", greeting: "Hi! How can we help you today?",
      sending: "Sending…", sent: "Sent", failed: "Not sent", retry: "Retry",
      unread: function (n) { return n === 1 ? "1 unread message" : n + " unread messages"; },
      didYouMean: "Did you mean:", you: "You", support: "Support",
      rate: "How did we do?", star: function (n) { return n === 1 ? "1 star" : n + " stars"; },
      comment: "Anything to add? (optional)", thanks: "Thank you for your feedback!",
      rated: function (n) { return "You rated us " + n + " of 5."; },
      expired: "This survey link has expired.", tryAgain: "That did not work. Please try again.",
      placeholder: "Type a message…"
    },
    zh: {
      open: "打开对话", close: "关闭对话", title: "在线客服", conversation: "对话记录",
      input: "消息", send: "发送", greeting: "您好！请问有什么可以帮您？",
      sending: "发送中…", sent: "已发送", failed: "发送失败", retry: "重试",
      unread: function (n) { return n + " 条未读消息"; },
      didYouMean: "您是不是想问：", you: "我", support: "客服",
      rate: "请为本次服务打分", star: function (n) { return n + " 星"; },
      comment: "其他意见（选填）", thanks: "感谢您的评价！",
      rated: function (n) { return "您的评分：" + n + " / 5"; },
      expired: "评价链接已过期。", tryAgain: "提交失败，请重试。",
      placeholder: "输入消息…"
    }
  };

  function pickLocale() {
    var wanted = [opts.locale].concat(navigator.languages || [navigator.language]);
    for (var i = 0; i < wanted.length; i++) {
      var l = String(wanted[i] || "").toLowerCase();
      if (l.indexOf("zh") === 0) return "zh";
      if (l.indexOf("en") === 0) return "en";
    }
    return "en";
  }
  var lang = pickLocale();
  var t = TEXTS[lang];
  var apiLocale = lang === "zh" ? "zh-CN" : "en";

  var color = opts.color && window.CSS && CSS.supports("color", opts.color) ? opts.color : "#2563eb";
  var side = opts.position === "left" ? "left" : "right";

  // ------------------------------------------------------------------ state
  // Kept per desk in localStorage: the session token, the messages not yet taken by the
  // desk (retried with the same client_message_id, so taken once), the last message seen
  // and whether the panel was open.
  var KEY = "helpdesk-widget:" + desk;
  var memory = {};
  function load() {
    try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch (e) { return memory; }
  }
  function save() {
    try { localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { memory = state; }
  }
  var state = load();
  state.outbox = state.outbox || [];

  var after = null; // the newest message the desk sent us, in its order: our bookmark
  var afterAt = -Infinity; // its time
  var shown = {}; // message id -> true, for everything on screen
  var pending = []; // outbox items on screen: {cid, text, id, el, status}
  var unread = 0;

  // ------------------------------------------------------------------ DOM
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k];
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
      else if (attrs[k] !== false && attrs[k] != null) e.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
    }
    (kids || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  var CSS_TEXT =
    ".root{all:initial;position:fixed;z-index:2147483000;bottom:20px;" + side + ":20px;display:flex;" +
    "flex-direction:column;align-items:" + (side === "left" ? "flex-start" : "flex-end") + ";gap:12px;" +
    "font:14px/1.45 system-ui,-apple-system,'Segoe UI','PingFang SC','Microsoft YaHei','Noto Sans CJK SC',sans-serif;" +
    "color:#1f2937;--c:" + color + "}" +
    "*,*::before,*::after{box-sizing:border-box}" +
    "button,textarea{font:inherit;color:inherit;margin:0}" +
    "button{cursor:pointer}" +
    ":focus-visible{outline:2px solid #111827;outline-offset:2px}" +
    ".bubble{position:relative;display:flex;align-items:center;justify-content:center;width:56px;height:56px;" +
    "border:0;border-radius:50%;background:var(--c);color:#fff;box-shadow:0 4px 14px rgba(0,0,0,.25);padding:0}" +
    ".bubble svg{width:28px;height:28px;display:block}" +
    ".badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;" +
    "background:#dc2626;color:#fff;font-size:12px;line-height:20px;font-weight:600;text-align:center}" +
    ".badge[hidden],.panel[hidden],[hidden]{display:none}" +
    ".panel{display:flex;flex-direction:column;width:360px;max-width:calc(100vw - 40px);height:520px;" +
    "max-height:calc(100vh - 110px);background:#fff;border-radius:12px;overflow:hidden;" +
    "box-shadow:0 8px 30px rgba(0,0,0,.25)}" +
    ".head{display:block;background:var(--c);color:#fff;padding:12px 16px;font-size:16px;font-weight:600;margin:0}" +
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f9fafb}" +
    ".msg{display:block;max-width:85%;padding:8px 12px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere}" +
    ".mine{align-self:flex-end;background:var(--c);color:#fff;border-bottom-right-radius:4px}" +
    ".desk{align-self:flex-start;background:#fff;border:1px solid #e5e7eb;border-bottom-left-radius:4px}" +
    ".note{align-self:center;background:#eef2f7;color:#374151;font-size:13px;text-align:center}" +
    ".who{display:block;font-size:12px;font-weight:600;margin-bottom:2px}" +
    ".meta{display:flex;gap:8px;align-items:center;justify-content:flex-end;font-size:11px;opacity:.85;margin-top:4px}" +
    ".failed{background:#fee2e2;color:#7f1d1d}" +
    ".meta button{border:1px solid currentColor;background:#fff;color:#7f1d1d;border-radius:6px;padding:1px 8px;font-size:12px}" +
    ".choices{display:flex;flex-wrap:wrap;gap:6px;margin-top:8px}" +
    ".choices span{display:block;width:100%;font-size:12px;color:#4b5563}" +
    ".choices button{border:1px solid var(--c);background:#fff;color:var(--c);border-radius:14px;padding:3px 10px;font-size:13px}" +
    ".survey{display:block;margin-top:8px}" +
    ".survey textarea{display:block;width:100%;min-height:48px;resize:vertical;border:1px solid #d1d5db;border-radius:8px;padding:6px 8px;margin:4px 0 6px;background:#fff}" +
    ".survey label{display:block;font-size:12px;color:#4b5563}" +
    ".stars{display:flex;gap:2px}" +
    ".stars button{border:0;background:none;padding:0 2px;font-size:26px;line-height:1;color:#6b7280}" +
    ".stars button.on{color:#d97706}" +
    ".form{display:flex;gap:8px;align-items:flex-end;padding:8px;border-top:1px solid #e5e7eb;background:#fff;margin:0}" +
    ".form textarea{flex:1;display:block;resize:none;height:38px;max-height:120px;border:1px solid #d1d5db;border-radius:8px;" +
    "padding:8px 10px;background:#fff;line-height:1.45}" +
    ".form .send{display:block;border:0;border-radius:8px;background:var(--c);color:#fff;padding:0 14px;height:38px;font-weight:600}" +
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}";

  var ICON =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" ' +
    'stroke-linejoin="round" aria-hidden="true" focusable="false"><path d="M21 12a8 8 0 0 1-11.6 7.1L4 ' +
    '20l1-4.6A8 8 0 1 1 21 12z"/></svg>';

  var host = el("div", { "data-helpdesk-widget": "" });
  // Inline and important: the host page's rules, however broad, cannot restyle the host,
  // and nothing it inherits (a 40px font, say) crosses into the widget.
  host.style.cssText = "all:initial !important;display:block !important;position:static !important";
  var root = host.attachShadow({ mode: "open" });

  var badge = el("span", { class: "badge", "aria-hidden": "true", hidden: true });
  var unreadText = el("span", { class: "sr", id: "hd-unread", "aria-live": "polite" });
  var bubble = el("button", {
    type: "button", class: "bubble", "aria-label": t.open, "aria-expanded": "false",
    "aria-controls": "hd-panel", "aria-describedby": "hd-unread", onclick: function () { toggle(); }
  });
  bubble.innerHTML = ICON;
  bubble.appendChild(badge);

  var log = el("div", {
    class: "log", role: "log", "aria-live": "polite", "aria-label": t.conversation, tabindex: "0"
  });
  var input = el("textarea", {
    "aria-label": t.input, placeholder: t.placeholder, rows: "1", maxlength: "4096", enterkeyhint: "send"
  });
  var sendButton = el("button", { type: "submit", class: "send", text: t.send });
  var form = el("form", { class: "form", onsubmit: function (e) { e.preventDefault(); submit(); } }, [input, sendButton]);
  var panel = el("section", { class: "panel", id: "hd-panel", "aria-label": t.title, hidden: true }, [
    el("h2", { class: "head", text: t.title }), log, form
  ]);
  var wrap = el("div", { class: "root", lang: apiLocale }, [panel, bubble, unreadText]);
  root.appendChild(el("style", { text: CSS_TEXT }));
  root.appendChild(wrap);

  // ------------------------------------------------------------------ keyboard
  // Enter sends and Shift+Enter adds a line. While an input method composes (Chinese
  // pinyin, Japanese kana...), Enter only confirms the candidate: it must never send.
  var composing = false;
  input.addEventListener("compositionstart", function () { composing = true; });
  input.addEventListener("compositionend", function () { composing = false; });
  input.addEventListener("keydown", function (e) {
    if (e.key !== "Enter" || e.shiftKey || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.isComposing || e.keyCode === 229 || composing) return;
    e.preventDefault();
    submit();
  });
  input.addEventListener("input", grow);
  function grow() {
    input.style.height = "38px";
    input.style.height = Math.min(input.scrollHeight + 2, 120) + "px";
  }
  wrap.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !panel.hidden) {
      toggle(false);
      bubble.focus();
    }
  });

  // ------------------------------------------------------------------ the API
  function api(method, url, body, token) {
    var headers = {};
    if (body) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = "Bearer " + token;
    return fetch(url.indexOf("http") === 0 ? url : desk + url, {
      method: method, headers: headers, body: body ? JSON.stringify(body) : undefined,
      mode: "cors", credentials: "omit", cache: "no-store"
    }).then(function (r) {
      return r.text().then(function (raw) {
        var data = null;
        try { data = raw ? JSON.parse(raw) : null; } catch (e) { data = null; }
        if (!r.ok) {
          var err = new Error((data && data.error && data.error.message) || "HTTP " + r.status);
          err.status = r.status;
          throw err;
        }
        return data;
      });
    });
  }

  var starting = null;
  function session() {
    if (state.token) return Promise.resolve(state.token);
    if (!starting) {
      var name = (opts.name || "").trim();
      var email = (opts.email || "").trim();
      if (email) name = name ? name + " <" + email + ">" : email;
      var body = { locale: apiLocale };
      if (name) body.name = name;
      starting = api("POST", "/webchat/sessions", body).then(function (s) {
        state.token = s.token;
        save();
        return s.token;
      });
      starting.then(null, function () {}).then(function () { starting = null; });
    }
    return starting;
  }

  // ------------------------------------------------------------------ messages
  function time(iso) {
    var d = iso ? new Date(iso) : new Date();
    return isNaN(d) ? "" : d.toLocaleTimeString(apiLocale, { hour: "2-digit", minute: "2-digit" });
  }

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function mine(item) {
    var status = el("span");
    var meta = el("div", { class: "meta" }, [status]);
    item.el = el("div", { class: "msg mine" }, [el("span", { class: "sr", text: t.you + ": " }), document.createTextNode(item.text), meta]);
    item.status = status;
    item.meta = meta;
    log.appendChild(item.el);
    scrollDown();
  }

  function mark(item, what) {
    item.state = what;
    item.status.textContent = what === "failed" ? t.failed : what === "sent" ? t.sent + " · " + time(item.at) : t.sending;
    item.el.classList.toggle("failed", what === "failed");
    var old = item.meta.querySelector("button");
    if (old) old.remove();
    if (what === "failed") {
      item.meta.appendChild(el("button", { type: "button", text: t.retry, onclick: function () { deliver(item); } }));
    }
  }

  function submit() {
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    grow();
    var item = { cid: uuid(), text: text };
    state.outbox.push({ cid: item.cid, text: text });
    save();
    pending.push(item);
    mine(item);
    deliver(item);
  }

  // A message that failed is sent again by itself, once, when the page is back online or
  // the next poll gets through: the same client_message_id, so the desk takes it once even
  // if the first try reached it. Retry stays for the visitor; using it allows one more
  // automatic try after that.
  function resendFailed() {
    pending.forEach(function (item) {
      if (item.state === "failed" && !item.resent) {
        item.resent = true;
        deliver(item, true);
      }
    });
  }
  window.addEventListener("online", resendFailed);

  function deliver(item, automatic) {
    if (!automatic) item.resent = false;
    mark(item, "sending");
    var attempt = function (retried) {
      return session()
        .then(function (token) {
          return api("POST", "/webchat/messages", { text: item.text, client_message_id: item.cid }, token);
        })
        .then(null, function (err) {
          // The desk no longer knows the session (its data was reset): start a new one.
          if (err.status === 401 && !retried) {
            state.token = null;
            return attempt(true);
          }
          throw err;
        });
    };
    attempt(false).then(function (r) {
      item.id = r.message_id;
      item.at = new Date().toISOString();
      shown[item.id] = true;
      state.outbox = state.outbox.filter(function (o) { return o.cid !== item.cid; });
      save();
      mark(item, "sent");
      hurry();
    }, function () {
      mark(item, "failed");
      // Keep polling (the first message makes the session, so nothing polls yet): the desk
      // may have taken it and answered, and a poll that gets through sends it again.
      if (!timer && !busy) schedule(delay);
    });
  }

  function fromDesk(m) {
    var kids = [];
    if (m.kind === "agent_reply") kids.push(el("span", { class: "who", text: m.agent_name || t.support }));
    else kids.push(el("span", { class: "sr", text: t.support + ": " }));
    var text = m.text || "";
    if (m.kind === "survey" && m.link) text = text.split(m.link).join("").replace(/[\s:：]+$/, "");
    kids.push(document.createTextNode(text));
    if (m.choices && m.choices.length) {
      kids.push(el("div", { class: "choices" }, [el("span", { text: t.didYouMean })].concat(
        m.choices.map(function (c) {
          return el("button", { type: "button", text: c, onclick: function () { input.value = c; submit(); } });
        })
      )));
    }
    if (m.kind === "survey" && /^https?:\/\//.test(m.link || "")) kids.push(survey(m.link));
    var cls = m.kind === "handoff" ? "note" : "desk";
    var e = el("div", { class: "msg " + cls, "data-kind": m.kind }, kids);
    e.appendChild(el("div", { class: "meta", text: time(m.created_at) }));
    return e;
  }

  var fields = 0;
  function survey(link) {
    var box = el("div", { class: "survey" });
    var id = "hd-comment-" + ++fields;
    var note = el("textarea", { id: id, maxlength: "2000" });
    var error = el("div", { role: "status" });
    var stars = [1, 2, 3, 4, 5].map(function (n) {
      return el("button", {
        type: "button", "aria-label": t.star(n), text: "☆",
        onmouseenter: function () { light(n); }, onmouseleave: function () { light(0); },
        onfocus: function () { light(n); }, onblur: function () { light(0); },
        onclick: function () {
          stars.forEach(function (b) { b.disabled = true; });
          api("POST", link, { rating: n, comment: note.value.trim() || undefined }).then(function () {
            thanks(box, n);
          }, function (err) {
            stars.forEach(function (b) { b.disabled = false; });
            // A second answer is the first one standing, not a failure.
            if (err.status === 409) return thanks(box, 0);
            error.textContent = err.status === 404 ? t.expired : t.tryAgain;
          });
        }
      });
    });
    function light(n) {
      stars.forEach(function (b, i) {
        b.classList.toggle("on", i < n);
        b.textContent = i < n ? "★" : "☆";
      });
    }
    box.appendChild(el("label", { for: id, text: t.comment }));
    box.appendChild(note);
    box.appendChild(el("div", { role: "group", "aria-label": t.rate, class: "stars" }, stars));
    box.appendChild(error);
    // Already answered, on another page or before a reload: show the thank-you at once.
    fetch(link, { headers: { Accept: "application/json" }, credentials: "omit" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (v) { if (v && v.answered) thanks(box, v.rating); }, function () {});
    return box;
  }

  function thanks(box, rating) {
    box.textContent = "";
    box.appendChild(el("p", { role: "status", text: t.thanks + (rating ? " " + t.rated(rating) : "") }));
  }

  function show(m, counting) {
    if (shown[m.id]) return;
    shown[m.id] = true;
    if (m.direction === "inbound") {
      // Our own message, written on another page or taken before its answer came back.
      for (var i = 0; i < pending.length; i++) {
        if (!pending[i].id && pending[i].text === m.text) {
          pending[i].id = m.id;
          return;
        }
      }
      var item = { text: m.text, id: m.id, at: m.created_at };
      mine(item);
      mark(item, "sent");
      return;
    }
    log.appendChild(fromDesk(m));
    scrollDown();
    if (panel.hidden && counting) setUnread(unread + 1);
  }

  function setUnread(n) {
    unread = n;
    badge.hidden = n === 0;
    badge.textContent = n > 99 ? "99+" : String(n);
    unreadText.textContent = n ? t.unread(n) : "";
  }

  // ------------------------------------------------------------------ polling
  // Fast right after the visitor writes, then slower and slower while nothing happens;
  // paused while the page is hidden, and at once when it is shown again.
  var FAST = 1000, SLOW = 4000, IDLE = 20000, IDLE_AFTER = 10 * 60 * 1000;
  var delay = FAST, timer = null, busy = false, lastActivity = Date.now(), loaded = false;

  function schedule(ms) {
    clearTimeout(timer);
    timer = null;
    if (!state.token || document.hidden) return;
    timer = setTimeout(poll, ms);
  }

  function hurry() {
    lastActivity = Date.now();
    delay = FAST;
    schedule(FAST / 2);
  }

  function poll() {
    if (busy || !state.token) return;
    busy = true;
    var first = !loaded;
    api("GET", "/webchat/messages" + (after ? "?after=" + encodeURIComponent(after) : ""), null, state.token)
      .then(function (r) {
        var list = (r && r.messages) || [];
        // The desk sends again the last moments before our bookmark (a message stored a
        // little late is not skipped); only those not on screen yet are news.
        var fresh = list.filter(function (m) { return !shown[m.id]; });
        if (first) {
          // History on load: unread is what came after the last message seen with the panel open.
          var seenAt = -1;
          list.forEach(function (m, i) { if (m.id === state.seen) seenAt = i; });
          list.forEach(function (m, i) { show(m, seenAt >= 0 && i > seenAt); });
          loaded = true;
        } else {
          fresh.forEach(function (m) { show(m, true); });
        }
        resendFailed();
        if (fresh.length) {
          // The last in the desk's order, unless only a late one came: then the last can be
          // older than our bookmark, which stays.
          var last = list[list.length - 1], lastAt = Date.parse(last.created_at);
          if (!(lastAt < afterAt)) {
            after = last.id;
            afterAt = lastAt;
          }
          if (!panel.hidden) state.seen = after;
          if (!first && fresh.some(function (m) { return m.direction === "outbound"; })) lastActivity = Date.now();
          delay = FAST;
        } else {
          delay = Math.min(delay * 1.5, Date.now() - lastActivity > IDLE_AFTER ? IDLE : SLOW);
        }
        save();
      }, function (err) {
        if (err.status === 401) {
          state.token = null;
          save();
        } else if (err.status === 404) {
          after = null; // our bookmark is gone; everything on screen is skipped by id
          afterAt = -Infinity;
        }
        delay = Math.min(delay * 2, IDLE);
      })
      .then(function () {
        busy = false;
        schedule(delay);
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) schedule(0);
  });

  // ------------------------------------------------------------------ open and close
  function toggle(open) {
    if (open === undefined) open = panel.hidden;
    panel.hidden = !open;
    bubble.setAttribute("aria-expanded", String(open));
    bubble.setAttribute("aria-label", open ? t.close : t.open);
    state.open = open;
    if (open) {
      setUnread(0);
      if (after) state.seen = after;
      scrollDown();
      input.focus();
    }
    save();
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "m-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  // ------------------------------------------------------------------ start
  function start() {
    document.body.appendChild(host);
    log.appendChild(el("div", { class: "msg desk", text: opts.greeting || t.greeting }));
    // Messages written before a reload and not yet taken: sent again under the same id,
    // which the desk takes once.
    state.outbox.forEach(function (o) {
      var item = { cid: o.cid, text: o.text };
      pending.push(item);
      mine(item);
      deliver(item);
    });
    if (state.open) toggle(true);
    if (state.token) poll();
  }

  window.HelpdeskWidget = {
    open: function () { toggle(true); },
    close: function () { toggle(false); }
  };
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
