/** The join token (admins): masked until revealed (each read is audited), copied, rotated after a confirm. */
import { adminOnly, copySecret } from "./admin.js";
import { apiJson, startPage } from "./common.js";

const $ = (id) => document.getElementById(id);
const who = await startPage();

if (adminOnly(who)) {
  const input = $("join-value");
  const reveal = $("join-reveal");
  const status = $("join-status");
  const listError = $("list-error");
  const MASK = input.value;
  /** The token once read (it is read only when revealed or copied). */
  let token = null;

  const read = async () => {
    token ??= (await apiJson("/api/v1/nodes/join-token")).token;
    return token;
  };
  const show = (shown) => {
    input.type = shown ? "text" : "password";
    input.value = shown ? token : MASK;
    reveal.textContent = shown ? "Hide" : "Reveal";
    reveal.setAttribute("aria-pressed", String(shown));
  };

  reveal.addEventListener("click", async () => {
    listError.textContent = "";
    if (reveal.getAttribute("aria-pressed") === "true") {
      show(false);
      status.textContent = "Hidden.";
      return;
    }
    try {
      await read();
      show(true);
      status.textContent = "Shown. Anyone who has it can add a node to this farm.";
    } catch (e) {
      listError.textContent = e.message;
    }
  });

  $("join-copy").addEventListener("click", async () => {
    listError.textContent = "";
    try {
      const value = await read();
      const shown = reveal.getAttribute("aria-pressed") === "true";
      if (!shown) show(true);
      await copySecret(value, input, status);
    } catch (e) {
      listError.textContent = e.message;
    }
  });

  $("join-rotate").addEventListener("click", async () => {
    const error = $("rotate-error");
    error.textContent = "";
    const sure = confirm(
      "Rotate the join token?\n\nThe current one stops working at once: nodes that have not joined yet need the " +
        "new one. Nodes that already joined keep working with their own keys.",
    );
    if (!sure) return;
    try {
      token = (await apiJson("/api/v1/nodes/join-token/rotate", { method: "POST" })).token;
      show(true);
      status.textContent = "Rotated: this is the new token. Start nodes that have not joined yet with it.";
    } catch (e) {
      error.textContent = e.message;
    }
  });
}
