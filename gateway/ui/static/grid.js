/**
 * The instance grid: one canvas, one cell per instance, coloured by state;
 * failed cells also carry a cross (or, when tiny, a hole).
 * A redraw is a loop of fillRect calls (10,000 cells take about a
 * millisecond), batched to one per animation frame.
 */

/** State letters as `/states` sends them, and the codes the grid keeps. */
export const LETTERS = "qrsfc";
/** State names by code. */
export const STATE_NAMES = ["queued", "running", "succeeded", "failed", "cancelled"];
const QUEUED = 0;
const RUNNING = 1;
const FAILED = 3;

/** Is the state with this code final? */
export const isFinalCode = (code) => code >= 2;

/** Cell size and gap (CSS pixels) for `n` instances. */
function cellSize(n) {
  if (n <= 200) return [24, 3];
  if (n <= 2000) return [12, 2];
  if (n <= 20_000) return [6, 1];
  if (n <= 200_000) return [3, 1];
  return [2, 0];
}

/**
 * Creates a grid on `canvas` for `total` instances. `onOpen(index)` is called
 * when an instance is clicked or chosen with Enter; `onHover(index | null)`
 * as the pointer or the keyboard cursor moves.
 */
export function createGrid(canvas, total, { onOpen, onHover }) {
  const states = new Uint8Array(total);
  const style = getComputedStyle(document.documentElement);
  const colours = STATE_NAMES.map((s) => style.getPropertyValue(`--${s}`).trim());
  const [cell, gap] = cellSize(total);
  const pitch = cell + gap;
  // Room around the cells for the ring of the selected one.
  const pad = 3;
  let cols = 1;
  let selected = -1;
  let cursor = 0;
  let frame = 0;

  function layout() {
    const width = canvas.parentElement.clientWidth - 2 * pad;
    cols = Math.max(1, Math.min(total, Math.floor((width + gap) / pitch)));
    const rows = Math.ceil(total / cols);
    const dpr = globalThis.devicePixelRatio || 1;
    const cssWidth = cols * pitch - gap + 2 * pad;
    const cssHeight = rows * pitch - gap + 2 * pad;
    canvas.style.width = `${cssWidth}px`;
    canvas.style.height = `${cssHeight}px`;
    canvas.width = Math.ceil(cssWidth * dpr);
    canvas.height = Math.ceil(cssHeight * dpr);
    draw();
  }

  function draw() {
    frame = 0;
    const ctx = canvas.getContext("2d");
    const dpr = globalThis.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, pad * dpr, pad * dpr);
    ctx.clearRect(-pad, -pad, canvas.width, canvas.height);
    // One pass per colour keeps fillStyle changes to five.
    for (let code = 0; code < colours.length; code++) {
      ctx.fillStyle = colours[code];
      for (let i = 0; i < total; i++) {
        if (states[i] === code) ctx.fillRect((i % cols) * pitch, Math.floor(i / cols) * pitch, cell, cell);
      }
    }
    markFailed(ctx);
    const ring = (i, colour) => {
      if (i < 0 || i >= total) return;
      const w = Math.max(2, Math.min(3, cell / 4));
      ctx.strokeStyle = colour;
      ctx.lineWidth = w;
      ctx.strokeRect((i % cols) * pitch - w / 2, Math.floor(i / cols) * pitch - w / 2, cell + w, cell + w);
    };
    ring(selected, "#1b1f24");
    if (document.activeElement === canvas) ring(cursor, "#e8a300");
  }

  /** A cross over each failed cell (a hole in the smallest ones), so that failures show without colour. */
  function markFailed(ctx) {
    if (cell < 3) return;
    ctx.fillStyle = ctx.strokeStyle = "#ffffff";
    if (cell < 6) {
      for (let i = 0; i < total; i++) {
        if (states[i] === FAILED) {
          ctx.fillRect((i % cols) * pitch + 1, Math.floor(i / cols) * pitch + 1, cell - 2, cell - 2);
        }
      }
      return;
    }
    const inset = Math.max(1, Math.round(cell / 5));
    ctx.lineWidth = Math.max(1, cell / 8);
    ctx.beginPath();
    for (let i = 0; i < total; i++) {
      if (states[i] !== FAILED) continue;
      const x = (i % cols) * pitch;
      const y = Math.floor(i / cols) * pitch;
      ctx.moveTo(x + inset, y + inset);
      ctx.lineTo(x + cell - inset, y + cell - inset);
      ctx.moveTo(x + cell - inset, y + inset);
      ctx.lineTo(x + inset, y + cell - inset);
    }
    ctx.stroke();
  }

  const redraw = () => {
    frame ||= requestAnimationFrame(draw);
  };

  const indexAt = (event) => {
    const rect = canvas.getBoundingClientRect();
    const x = event.clientX - rect.left - pad;
    const y = event.clientY - rect.top - pad;
    const col = Math.floor(x / pitch);
    const row = Math.floor(y / pitch);
    if (x < 0 || y < 0 || col >= cols || x - col * pitch > cell || y - row * pitch > cell) return null;
    const i = row * cols + col;
    return i >= 0 && i < total ? i : null;
  };

  canvas.addEventListener("click", (e) => {
    const i = indexAt(e);
    if (i !== null) {
      cursor = i;
      onOpen(i);
    }
  });
  canvas.addEventListener("mousemove", (e) => onHover(indexAt(e)));
  canvas.addEventListener("mouseleave", () => onHover(null));
  canvas.addEventListener("focus", () => {
    onHover(cursor);
    redraw();
  });
  canvas.addEventListener("blur", redraw);
  canvas.addEventListener("keydown", (e) => {
    const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -cols, ArrowDown: cols, Home: -cursor, End: total };
    if (e.key in moves) {
      cursor = Math.max(0, Math.min(total - 1, cursor + moves[e.key]));
      onHover(cursor);
      redraw();
      e.preventDefault();
    } else if (e.key === "Enter" || e.key === " ") {
      onOpen(cursor);
      e.preventDefault();
    }
  });
  new ResizeObserver(() => layout()).observe(canvas.parentElement);
  layout();

  return {
    /** The state code of instance `i`. */
    state: (i) => states[i],
    /** Sets every state from a `/states` page. */
    load(from, letters) {
      for (let k = 0; k < letters.length; k++) states[from + k] = LETTERS.indexOf(letters[k]);
      redraw();
    },
    /** Applies `[index, state]` changes; a final state never goes back (an old event may come late). */
    change(pairs) {
      for (const [i, name] of pairs) {
        const code = STATE_NAMES.indexOf(name);
        if (i < total && code >= 0 && !(isFinalCode(states[i]) && !isFinalCode(code))) states[i] = code;
      }
      redraw();
    },
    /** Marks instances never run as cancelled (the task was cancelled). */
    cancelQueued() {
      for (let i = 0; i < total; i++) if (states[i] === QUEUED || states[i] === RUNNING) states[i] = 4;
      redraw();
    },
    /** Rings instance `i` as the one shown. */
    select(i) {
      selected = i;
      cursor = i;
      redraw();
    },
  };
}
