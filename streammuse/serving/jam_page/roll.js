// The live piano roll: the last bars and the next one, one column per tick.
// Melody blue, fresh accompaniment green, backups amber, misses red, frames waiting in
// the buffer grey (ahead of the now line).

export const COLOURS = {
  melody: '#3b82f6', fresh: '#16a34a', backup: '#f59e0b', miss: '#dc2626', buffered: '#9ca3af',
  grid: '#e5e7eb', bar: '#9ca3af', now: '#111827', background: '#ffffff',
};
const LOW = 36; // C2
const HIGH = 96; // C7
const PAST_TICKS = 64; // 4 bars of 4/4 behind the now line
const AHEAD_TICKS = 16; // one bar ahead

export class PianoRoll {
  constructor(canvas) {
    this.canvas = canvas;
    this.g = canvas.getContext('2d');
  }

  // view: {nowTick (float), melody: [[onset, dur, pitch]], played: [...], upcoming: [...]}
  draw(view) {
    const { g, canvas } = this;
    const w = canvas.width;
    const h = canvas.height;
    const first = view.nowTick - PAST_TICKS;
    const span = PAST_TICKS + AHEAD_TICKS;
    const x = (tick) => ((tick - first) / span) * w;
    const rowH = h / (HIGH - LOW + 1);
    const y = (pitch) => (HIGH - Math.min(HIGH, Math.max(LOW, pitch))) * rowH;
    g.fillStyle = COLOURS.background;
    g.fillRect(0, 0, w, h);
    for (let p = LOW; p <= HIGH; p += 1) {
      if (p % 12 === 0) { g.fillStyle = COLOURS.grid; g.fillRect(0, y(p), w, 1); }
    }
    for (let t = Math.ceil(first / 4) * 4; t < first + span; t += 4) {
      g.fillStyle = t % 16 === 0 ? COLOURS.bar : COLOURS.grid;
      g.fillRect(x(t), 0, 1, h);
    }
    const box = (tick, dur, pitch, colour) => {
      if (tick + dur < first || tick > first + span) return;
      g.fillStyle = colour;
      g.fillRect(x(tick), y(pitch), Math.max(2, x(tick + dur) - x(tick) - 1), Math.max(2, rowH - 1));
    };
    for (const p of view.played) {
      if (p.tick < first - 32) continue;
      if (!p.available) {
        g.fillStyle = COLOURS.miss;
        g.globalAlpha = 0.25;
        g.fillRect(x(p.tick), 0, Math.max(2, x(p.tick + 1) - x(p.tick)), h);
        g.globalAlpha = 1;
        continue;
      }
      for (const [pitch, dur] of p.frame) box(p.tick, dur, pitch, p.fresh ? COLOURS.fresh : COLOURS.backup);
    }
    for (const u of view.upcoming) for (const [pitch, dur] of u.frame) box(u.tick, dur, pitch, COLOURS.buffered);
    for (const [onset, dur, pitch] of view.melody) box(onset, dur, pitch, COLOURS.melody);
    g.fillStyle = COLOURS.now;
    g.fillRect(x(view.nowTick), 0, 2, h);
    g.font = '11px sans-serif';
    g.fillStyle = COLOURS.bar;
    for (let p = LOW; p <= HIGH; p += 12) g.fillText(`C${p / 12 - 1}`, 3, Math.max(11, y(p) - 2));
  }
}
