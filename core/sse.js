// @ts-check
/**
 * Server-sent events as `/api/v1/events` and log follows send them: blocks
 * of `event:` and `data:` lines ended by a blank line. The one reader of
 * that framing, for the CLI and, served as it is at `/ui/sse.js`, the web
 * UI (plain JavaScript with JSDoc types so that the browser needs no build
 * step).
 *
 * @module
 */

/**
 * One event: its `event:` name ("message" when it has none) and its `data:`
 * lines joined.
 * @typedef {{ kind: string, data: string }} SseEvent
 */

/**
 * Takes every whole event out of `buffer`, the text received so far; `rest`
 * is what is left of an event not yet whole. Events without data are
 * dropped (comments and keep-alives).
 * @param {string} buffer
 * @returns {{ events: SseEvent[], rest: string }}
 */
export function takeEvents(buffer) {
  /** @type {SseEvent[]} */
  const events = [];
  let end;
  while ((end = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    let kind = "message";
    let data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) kind = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    if (data) events.push({ kind, data });
  }
  return { events, rest: buffer };
}
