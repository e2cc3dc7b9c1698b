// rluf chat page: talks to the gateway's /v1 API with a dev-mode page session (never an API key).
"use strict";

(function () {
  // The eight reactions of the wire contract (rluf/schemas.py REACTION_KINDS), in that order.
  const REACTIONS = [
    ["love", "\u2764\uFE0F"], ["like", "\uD83D\uDE0A"], ["laugh", "\uD83D\uDE02"], ["wow", "\uD83D\uDE2E"],
    ["sad", "\uD83D\uDE22"], ["angry", "\uD83D\uDE20"], ["thumbs_up", "\uD83D\uDC4D"], ["thumbs_down", "\uD83D\uDC4E"],
  ];
  const $ = (id) => document.getElementById(id);
  const session = document.querySelector('meta[name="rluf-session"]').content;
  const messages = [];
  let userToken = null;
  let conversationId = null;

  function status(text) { $("status").textContent = text || ""; }

  async function call(path, body) {
    const headers = { "Content-Type": "application/json", "Authorization": "Bearer " + session };
    if (userToken) headers["X-RLUF-User"] = userToken;
    const response = await fetch(path, { method: "POST", headers: headers, body: JSON.stringify(body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const where = data.field ? " [" + data.field + "]" : "";
      throw new Error((data.detail || "HTTP " + response.status) + where);
    }
    return data;
  }

  function addTurn(role, text) {
    const item = document.createElement("li");
    item.className = role;
    const body = document.createElement("div");
    body.className = "text";
    body.textContent = text;
    item.appendChild(body);
    $("log").appendChild(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function reactionBar(responseId) {
    const bar = document.createElement("div");
    bar.className = "reactions";
    for (const [kind, emoji] of REACTIONS) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = emoji;
      button.title = kind.replace("_", " ");
      button.setAttribute("aria-label", kind.replace("_", " "));
      button.dataset.reaction = kind;
      button.setAttribute("aria-pressed", "false");
      button.addEventListener("click", async () => {
        const pressed = button.getAttribute("aria-pressed") === "true";
        button.disabled = true;
        try {
          await call("/v1/reactions", { response_id: responseId, reaction: kind, action: pressed ? "remove" : "add" });
          button.setAttribute("aria-pressed", pressed ? "false" : "true");
          status("");
        } catch (err) {
          status(err.message);
        } finally {
          button.disabled = false;
        }
      });
      bar.appendChild(button);
    }
    return bar;
  }

  if (!session) {
    status("This page needs a gateway started with `rluf serve --dev` (see docs/gateway.md).");
    $("login-button").disabled = true;
    return;
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const userId = $("user-id").value.trim();
    if (!userId) return;
    try {
      userToken = null;
      const reply = await call("/v1/tokens", { user_id: userId });
      userToken = reply.token;
      $("who").textContent = reply.user_id;
      $("login").hidden = true;
      $("chat").hidden = false;
      $("message").focus();
      status("");
    } catch (err) {
      status(err.message);
    }
  });

  $("chat-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("message").value.trim();
    if (!text) return;
    $("send").disabled = true;
    addTurn("user", text);
    messages.push({ role: "user", content: text });
    try {
      const body = { messages: messages };
      if (conversationId) body.conversation_id = conversationId;
      const reply = await call("/v1/chat", body);
      conversationId = reply.conversation_id;
      messages.push({ role: "assistant", content: reply.text });
      const item = addTurn("assistant", reply.text);
      item.dataset.responseId = reply.response_id;
      item.appendChild(reactionBar(reply.response_id));
      $("message").value = "";
      status("");
    } catch (err) {
      messages.pop();
      addTurn("error", err.message);
      status(err.message);
    } finally {
      $("send").disabled = false;
      $("message").focus();
    }
  });

  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
})();
