/**
 * Helpers of the web UI's end-to-end tests: Debian's Chromium, headless,
 * driven by playwright-core; pages whose console errors are collected;
 * screenshots at desktop and phone width.
 *
 * @module
 */
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { startTestManager, TEST_TOKEN, type TestManager } from "./manager.ts";
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

/** Saves the top `heightPx` of the page at desktop width into docs/ (`docs/ui-<name>.png`), for docs/web-ui.md. */
export async function docShot(page: Page, name: string, heightPx = DESKTOP.height): Promise<void> {
  await page.setViewportSize({ width: DESKTOP.width, height: heightPx });
  await page.evaluate("scrollTo(0, 0)");
  await page.screenshot({ path: join(ROOT, "docs", `ui-${name}.png`) });
  await page.setViewportSize(DESKTOP);
}

/**
 * Saves `heightPx` of the page at desktop width from the top of `selector`
 * down into docs/ (`docs/ui-<name>.png`), for what lies below the first screen.
 */
export async function docShotFrom(page: Page, selector: string, name: string, heightPx = DESKTOP.height) {
  await page.setViewportSize({ width: DESKTOP.width, height: heightPx });
  await page.evaluate(
    `scrollTo(0, document.querySelector(${JSON.stringify(selector)}).getBoundingClientRect().top + scrollY - 8)`,
  );
  await page.waitForTimeout(100);
  await page.screenshot({ path: join(ROOT, "docs", `ui-${name}.png`) });
  await page.setViewportSize(DESKTOP);
}

/** A task of a page's main thread: how long it took, and how much of that the thread ran (the rest it waited). */
export interface MainThreadTask {
  wallMs: number;
  cpuMs: number;
}

/** Trace categories that {@linkcode longMainThreadTasks} reads. */
export const TRACE_CATEGORIES = ["devtools.timeline", "disabled-by-default-devtools.timeline"];

/**
 * The main-thread tasks over `minMs` in a Chromium trace (taken with
 * {@linkcode TRACE_CATEGORIES}). On a machine that other processes keep busy a
 * task's wall time is mostly waiting for a CPU; its CPU time is what the page
 * itself spent.
 */
export function longMainThreadTasks(trace: Uint8Array, minMs = 50): MainThreadTask[] {
  type Event = {
    name: string;
    ph: string;
    pid: number;
    tid: number;
    dur?: number;
    tdur?: number;
  };
  const parsed = JSON.parse(new TextDecoder().decode(trace));
  const events: Event[] = Array.isArray(parsed) ? parsed : parsed.traceEvents;
  // Layout runs on a renderer's main thread only.
  const main = new Set(events.filter((e) => e.name === "Layout").map((e) => `${e.pid}/${e.tid}`));
  return events
    .filter((e) => e.ph === "X" && e.name === "RunTask" && main.has(`${e.pid}/${e.tid}`) && (e.dur ?? 0) > minMs * 1000)
    .map((e) => ({ wallMs: (e.dur ?? 0) / 1000, cpuMs: (e.tdur ?? 0) / 1000 }));
}

/** What {@linkcode withUi} gives its body. */
export interface UiRun {
  tm: TestManager;
  base: string;
  browser: Browser;
  /** Console errors of pages made with {@linkcode watchedPage} and these errors. */
  errors: string[];
}

/**
 * Runs `body` against a manager with a local node of `slots` slots (none
 * for 0) and a Chromium; after it, no page may have logged a console error.
 */
export async function withUi(slots: number, body: (run: UiRun) => Promise<void>): Promise<void> {
  await using tm = await startTestManager(slots > 0 ? { localNode: true, slots } : {});
  const browser = await launch();
  const errors: string[] = [];
  try {
    await body({ tm, base: tm.manager.url, browser, errors });
    if (errors.length) throw new Error(`Console errors:\n${errors.join("\n")}`);
  } finally {
    await browser.close();
  }
}

/** A TCP proxy to a local port whose connections a test can cut, and refuse for a while: an outage. */
export interface CuttableProxy extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** Resets every open connection and refuses new ones until {@linkcode CuttableProxy.restore}. */
  cut(): void;
  /** Accepts connections again. */
  restore(): void;
}

/** Starts a {@linkcode CuttableProxy} in front of `targetUrl` (an http URL on 127.0.0.1). */
export function startCuttableProxy(targetUrl: string): CuttableProxy {
  const target = new URL(targetUrl);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let down = false;
  const close = (c: Deno.Conn) => {
    open.delete(c);
    try {
      c.close();
    } catch { /* already closed */ }
  };
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    try {
      await from.readable.pipeTo(to.writable, { preventClose: true });
    } catch { /* cut */ }
    close(from);
    close(to);
  };
  (async () => {
    for await (const client of listener) {
      if (down) {
        client.close();
        continue;
      }
      try {
        const upstream = await Deno.connect({ hostname: "127.0.0.1", port: Number(target.port) });
        open.add(client);
        open.add(upstream);
        void pipe(client, upstream);
        void pipe(upstream, client);
      } catch {
        client.close();
      }
    }
  })().catch(() => {});
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    cut() {
      down = true;
      for (const c of [...open]) close(c);
    },
    restore() {
      down = false;
    },
    [Symbol.asyncDispose]() {
      listener.close();
      for (const c of [...open]) close(c);
      return Promise.resolve();
    },
  };
}
