/**
 * Helpers of the web UI's end-to-end tests: Debian's Chromium, headless,
 * driven by playwright-core; pages whose console errors are collected;
 * screenshots at desktop and phone width.
 *
 * @module
 */
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { TEST_TOKEN } from "./manager.ts";
import { ROOT } from "./processes.ts";

/** Where Debian puts Chromium. */
const CHROMIUM = "/usr/bin/chromium";
/** Screenshots of every page, for a look after a run. */
const SHOTS = join(ROOT, "test-output", "screenshots");
/** Desktop viewport. */
export const DESKTOP = { width: 1280, height: 800 };
/** Phone viewport. */
export const PHONE = { width: 390, height: 844 };
/** Test options: Chromium and the manager outlive single steps. */
export const opts = { sanitizeOps: false, sanitizeResources: false };

/** Starts headless Chromium. */
export async function launch(): Promise<Browser> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(
      `The UI tests need Chromium at ${CHROMIUM}: 'apt-get install -y chromium' (bash dev.sh test does it)`,
    );
  }
  return await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
  });
}

/** A page whose console errors and uncaught exceptions are collected. */
export async function watchedPage(browser: Browser, errors: string[]): Promise<Page> {
  const page = await browser.newPage({ viewport: DESKTOP });
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`${page.url()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`${page.url()}: uncaught ${e.message}`));
  page.on("dialog", (d) => void d.accept());
  page.setDefaultTimeout(20_000);
  return page;
}

/** Saves the page at desktop and phone width. */
export async function shoot(page: Page, name: string): Promise<void> {
  await Deno.mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(150);
  await page.screenshot({ path: join(SHOTS, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(DESKTOP);
}

/** Signs in with the admin token through the sign-in page, landing on `path`. */
export async function signIn(page: Page, base: string, path = "/tasks"): Promise<void> {
  await page.goto(`${base}${path}`);
  await page.waitForURL(/\/signin\?next=/);
  await page.getByLabel("Access token").fill(TEST_TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${base}${path}`);
  await page.locator("#who").getByText("admin (admin)").waitFor();
}
