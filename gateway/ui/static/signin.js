/** Sign in: check the token with `/api/v1/whoami`, keep it for this tab (or this device, if asked), go on. */
import { errorOf, setToken, UNREACHABLE } from "./common.js";

const params = new URLSearchParams(location.search);
const next = params.get("next") ?? "";
// Only paths on this site: never an address elsewhere.
const target = next.startsWith("/") && !next.startsWith("//") ? next : "/tasks";
document.getElementById("signin-note").textContent = params.get("reason") ?? "";

const form = document.getElementById("signin-form");
const input = document.getElementById("token");
const error = document.getElementById("token-error");
input.focus();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const token = input.value.trim();
  if (!token) {
    error.textContent = "Enter a token.";
    input.setAttribute("aria-invalid", "true");
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const res = await fetch("/api/v1/whoami", { headers: { authorization: `Bearer ${token}` }, cache: "no-store" });
    if (!res.ok) throw await errorOf(res);
    setToken(token, document.getElementById("remember").checked);
    location.replace(target);
  } catch (e) {
    error.textContent = e instanceof TypeError ? UNREACHABLE : e.message;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  } finally {
    button.disabled = false;
  }
});
