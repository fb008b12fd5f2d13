/** Shared by the admin pages: the "admins only" page for anyone else, and copying a secret. */
import { h } from "./common.js";

/**
 * Shows anyone but an admin a plain 403 page in place of the page's body (the API refuses them anyway) and returns
 * false; returns true for an admin.
 */
export function adminOnly(who) {
  if (who.role === "admin") return true;
  document.title = "Admins only · Parallelic";
  const main = document.getElementById("main");
  const heading = h("h1", { tabindex: "-1" }, "403: admins only");
  main.replaceChildren(
    h(
      "section",
      { class: "narrow forbidden", "aria-labelledby": "forbidden-title" },
      heading,
      h(
        "p",
        { id: "forbidden-title" },
        `This page is for admins. You are signed in as ${who.user}, whose role is ${who.role}.`,
      ),
      h("p", { class: "muted" }, "Ask an admin to change your role, or sign in with an admin token."),
      h("p", {}, h("a", { href: "/tasks" }, "Back to the tasks")),
    ),
  );
  heading.focus();
  return false;
}

/**
 * Copies `text` to the clipboard, else selects it in `input` for the user to copy; says which in `status`.
 */
export async function copySecret(text, input, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied to the clipboard.";
  } catch {
    input.focus();
    input.select();
    status.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
}
