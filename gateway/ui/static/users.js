/** Users and tokens (admins): list, add (the token shown once), change a role, rotate a token, remove. */
import { adminOnly, copySecret } from "./admin.js";
import { apiJson, formatTime, h, startPage } from "./common.js";

const $ = (id) => document.getElementById(id);
const who = await startPage();

const ROLES = ["admin", "submitter", "viewer"];

if (adminOnly(who)) {
  const tbody = document.querySelector("#users tbody");
  const listError = $("list-error");
  const status = $("user-status");
  const secret = $("secret");
  const secretValue = $("secret-value");
  const secretStatus = $("secret-status");

  /** Shows a token once, with a copy button; it is gone from the page when hidden or left. */
  const showSecret = (name, token, what) => {
    $("secret-title").textContent = `${what} for ${name}`;
    secretValue.value = token;
    secretStatus.textContent = "";
    secret.hidden = false;
    secret.focus();
  };
  $("secret-copy").addEventListener("click", () => copySecret(secretValue.value, secretValue, secretStatus));
  $("secret-done").addEventListener("click", () => {
    secretValue.value = "";
    secret.hidden = true;
  });

  const users = (name) => `/api/v1/users/${encodeURIComponent(name)}`;

  const roleSelect = (user) => {
    const select = h(
      "select",
      { "aria-label": `Role of ${user.name}` },
      ROLES.map((r) => h("option", { value: r, selected: r === user.role }, r)),
    );
    select.addEventListener("change", async () => {
      const role = select.value;
      status.textContent = "";
      listError.textContent = "";
      try {
        await apiJson(users(user.name), {
          method: "PATCH",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ role }),
        });
        user.role = role;
        status.textContent = `${user.name} is now ${role === "admin" ? "an" : "a"} ${role}.`;
      } catch (e) {
        select.value = user.role;
        listError.textContent = e.message;
      }
    });
    return select;
  };

  const row = (user) => {
    const rotate = h("button", {
      type: "button",
      class: "small",
      "aria-label": `Rotate the token of ${user.name}`,
      onclick: async () => {
        if (!confirm(`Give ${user.name} a new token? The one they have stops working at once.`)) return;
        listError.textContent = "";
        try {
          const reply = await apiJson(`${users(user.name)}/token`, { method: "POST" });
          showSecret(user.name, reply.token, "New token");
          await load();
        } catch (e) {
          listError.textContent = e.message;
        }
      },
    }, "Rotate token");
    const remove = h("button", {
      type: "button",
      class: "small danger",
      "aria-label": `Remove user ${user.name}`,
      onclick: async () => {
        if (!confirm(`Remove user ${user.name}? Their token stops working at once; their tasks stay.`)) return;
        listError.textContent = "";
        try {
          await apiJson(users(user.name), { method: "DELETE" });
          status.textContent = `Removed ${user.name}.`;
          await load();
        } catch (e) {
          listError.textContent = e.message;
        }
      },
    }, "Remove");
    const me = user.name === who.user ? h("span", { class: "sub" }, "you") : null;
    return h(
      "tr",
      { dataset: { name: user.name } },
      h("td", { class: "cell-main" }, h("strong", {}, user.name), " ", me),
      h("td", { "data-label": "Role" }, roleSelect(user)),
      h("td", { "data-label": "Added" }, formatTime(user.createdAt)),
      h("td", { "data-label": "Token made" }, formatTime(user.tokenCreatedAt)),
      h("td", { class: "cell-actions" }, h("div", { class: "action-row" }, rotate, remove)),
    );
  };

  const load = async () => {
    try {
      const reply = await apiJson("/api/v1/users");
      tbody.replaceChildren(...reply.users.sort((a, b) => a.name.localeCompare(b.name)).map(row));
    } catch (e) {
      listError.textContent = e.message;
    }
  };

  $("add-user").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const addError = $("add-error");
    addError.textContent = "";
    const name = $("new-name").value.trim();
    if (!form.reportValidity()) return;
    try {
      const reply = await apiJson("/api/v1/users", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ name, role: $("new-role").value }),
      });
      form.reset();
      showSecret(reply.name, reply.token, "Token");
      status.textContent = `Added ${reply.name} as ${reply.role === "admin" ? "an" : "a"} ${reply.role}.`;
      await load();
    } catch (err) {
      addError.textContent = err.message;
    }
  });

  await load();
}
