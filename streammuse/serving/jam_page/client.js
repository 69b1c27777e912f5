// The client's rules (paper section IV; streammuse/client/session.py and buffer.py),
// written again for the page. Nothing here knows about time sources or the network: the
// page calls onTick at each onset of the audio clock and onReply / onError when a
// request ends, exactly as the Python clocks drive SongClient.

export const MAX_NOTES_PER_FRAME = 4;
const MAX_BACKOFF_TICKS = 64; // 2 bars of 4/4, as the Python client

// The tick-aligned buffer with backups (buffer.py): a frame is written only if its tick
// has not started (strict late drop) and only over an older generation.
export class TickBuffer {
  constructor(nTicks) {
    this.nTicks = nTicks; // Infinity: a take without a set length
    this.slots = new Map(); // tick -> {requestId, requestTick, index, frame}
    this.nextTick = 0;
  }

  offer(requestId, requestTick, frames) {
    let written = 0;
    frames.forEach((frame, i) => {
      const t = requestTick + i;
      if (t < this.nextTick || t >= this.nTicks) return;
      const held = this.slots.get(t);
      if (held && requestTick < held.requestTick) return; // an older generation never overwrites
      this.slots.set(t, { requestId, requestTick, index: i, frame });
      written += 1;
    });
    return written;
  }

  play(tick) {
    if (tick !== this.nextTick) throw new Error(`ticks are played in order: expected ${this.nextTick}, got ${tick}`);
    this.nextTick = tick + 1;
    const slot = this.slots.get(tick);
    this.slots.delete(tick);
    if (!slot) return { tick, available: false, staleness: -1, requestId: -1, requestTick: -1, frame: null };
    return { tick, available: true, staleness: slot.index, requestId: slot.requestId, requestTick: slot.requestTick, frame: slot.frame };
  }

  upcoming() {
    return [...this.slots.entries()].map(([tick, s]) => ({ tick, ...s }));
  }
}

// The inference role: a request every I ticks, sent at the onset of s-1, with backoff.
export class InferenceRole {
  constructor(interval, genLen, nTicks) {
    Object.assign(this, { interval, genLen, nTicks });
    this.ackedUntil = 0; // the server answered a request for this tick, so holds M[<it]
    this.failures = 0;
    this.nextAllowedSendTick = -1;
    this.failureCountedAt = -1; // the tick at which the last failure raised the backoff
    this.needContext = false;
    this.contextRequest = -1; // the request that last carried the context
  }

  due(tick) {
    const s = tick + 1;
    if (s < 0 || s >= this.nTicks || s % this.interval !== 0 || tick < this.nextAllowedSendTick) return null;
    return s;
  }

  // A request sent before the last failure was counted was in flight then: the same
  // outage, not one more failure.
  onFailure(nowTick, sentTick) {
    if (sentTick < this.failureCountedAt) return;
    this.failureCountedAt = nowTick;
    this.failures += 1;
    const wait = Math.min(this.interval * 2 ** (this.failures - 1), MAX_BACKOFF_TICKS);
    this.nextAllowedSendTick = Math.max(this.nextAllowedSendTick, nowTick + wait - 1);
  }
}

// The input role, live: a key press belongs to the nearest tick onset; a frame is frozen
// once a request has carried it, and a note pressed after that moves to the first open
// tick, so the server and the take always hold the same melody. A note still held when
// its frame is sent goes out with the ticks it has sounded so far (counting the current
// one); the take keeps its real length.
export class MelodyInput {
  constructor() {
    this.notes = []; // {pitch, start, end} (end null while held)
    this.byTick = new Map(); // tick -> notes starting there
    this.frozenUntil = 0; // frames [0, frozenUntil) were sent
    this.moved = 0;
    this.dropped = 0;
  }

  noteOn(pitch, tick) {
    let t = Math.max(tick, this.frozenUntil, 0);
    if (t !== tick) this.moved += 1;
    const frame = this.byTick.get(t) || [];
    if (frame.length >= MAX_NOTES_PER_FRAME) { this.dropped += 1; return null; }
    const note = { pitch, start: t, end: null };
    frame.push(note);
    this.byTick.set(t, frame);
    this.notes.push(note);
    return note;
  }

  noteOff(note, tick) {
    if (note && note.end === null) note.end = Math.max(tick, note.start + 1);
  }

  // Wire frames [[pitch, duration], ...] for ticks [start, stop) as known at tick nowTick.
  frames(start, stop, nowTick) {
    const out = [];
    for (let t = start; t < stop; t += 1) {
      out.push((this.byTick.get(t) || []).map((n) => [n.pitch, n.end !== null ? n.end - n.start : Math.max(1, nowTick - n.start + 1)]));
    }
    this.frozenUntil = Math.max(this.frozenUntil, stop);
    return out;
  }

  // The melody as played, [onset, duration, pitch]; notes held at the end stop there.
  played(stopTick) {
    return this.notes.filter((n) => n.start < stopTick)
      .map((n) => [n.start, Math.max(1, Math.min(n.end === null ? stopTick : n.end, stopTick) - n.start), n.pitch]);
  }
}

// One take: the three roles wired together (SongClient in session.py).
export class JamClient {
  constructor({ interval, genLen, nTicks }) {
    this.nTicks = nTicks;
    this.input = new MelodyInput();
    this.inference = new InferenceRole(interval, genLen, nTicks);
    this.buffer = new TickBuffer(nTicks);
    this.played = [];
    this.requests = [];
  }

  // Onset of tick `tick` (-1 is the last count-in tick): play A[t], maybe send.
  // The slot is played before anything else, which makes the arrival rule strict.
  onTick(tick, nowMs) {
    let played = null;
    if (tick >= 0) {
      played = this.buffer.play(tick);
      played.fresh = played.available && played.requestId === this.newestCovering(tick);
      this.played.push(played);
    }
    const s = this.inference.due(tick);
    return { played, send: s === null ? null : this.request(s, tick, nowMs) };
  }

  request(s, tick, nowMs) {
    const inf = this.inference;
    const rec = {
      request_id: this.requests.length, send_tick: tick, request_tick: s, gen_len: inf.genLen,
      send_ms: nowMs, recv_ms: null, status: 'pending', inference_ms: null, queue_ms: null, accompaniment: [],
    };
    this.requests.push(rec);
    let body;
    if (inf.needContext) {
      const melody = this.input.frames(0, s, tick);
      const accompaniment = this.played.slice(0, s).map((p) => (p.available ? p.frame : []));
      body = { request_tick: s, gen_len: inf.genLen, melody: [], melody_start: s, context: { melody, accompaniment } };
      inf.needContext = false;
      inf.contextRequest = rec.request_id;
    } else {
      const start = inf.ackedUntil;
      body = { request_tick: s, gen_len: inf.genLen, melody: this.input.frames(start, s, tick), melody_start: start };
    }
    return { rec, body };
  }

  onReply(rec, response, recvMs) {
    rec.recv_ms = recvMs;
    rec.inference_ms = response.inference_ms;
    rec.queue_ms = response.queue_ms;
    this.inference.failures = 0;
    if (response.status === 'superseded' || response.status === 'expired') { rec.status = response.status; return 0; }
    this.inference.ackedUntil = Math.max(this.inference.ackedUntil, rec.request_tick);
    rec.status = this.buffer.nextTick > rec.request_tick ? 'late' : 'ok';
    rec.accompaniment = response.accompaniment;
    return this.buffer.offer(rec.request_id, rec.request_tick, response.accompaniment);
  }

  // No answer. Unknown session: re-send the context next time. Otherwise back off (and
  // if this request carried the context and was refused, not timed out, the next one
  // carries it again).
  onError(rec, recvMs, unknownSession, timedOut = false) {
    rec.recv_ms = recvMs;
    rec.status = 'failed';
    const inf = this.inference;
    if (unknownSession) {
      Object.assign(inf, { needContext: true, ackedUntil: 0, failures: 0, nextAllowedSendTick: -1 });
    } else {
      inf.needContext = inf.needContext || (rec.request_id === inf.contextRequest && !timedOut);
      inf.onFailure(this.buffer.nextTick, rec.send_tick);
    }
  }

  // The unreachable server answers again (its health probe): end the backoff.
  onServerBack() {
    Object.assign(this.inference, { failures: 0, nextAllowedSendTick: -1 });
  }

  newestCovering(tick) {
    for (let i = this.requests.length - 1; i >= 0; i -= 1) {
      const r = this.requests[i];
      if (r.request_tick <= tick && tick < r.request_tick + r.gen_len) return r.request_id;
    }
    return -1;
  }

  finishPending() {
    for (const r of this.requests) if (r.status === 'pending') r.status = 'failed';
  }

  // ISR, Staleness, ISR_w over the ticks played so far (metrics/realtime.py).
  metrics(c = 32) {
    const n = this.played.length;
    const hits = this.played.filter((p) => p.available);
    const isr = n ? hits.length / n : NaN;
    const staleness = hits.length ? hits.reduce((a, p) => a + p.staleness, 0) / hits.length : NaN;
    const isrW = n ? hits.reduce((a, p) => a + (c - p.staleness) / c, 0) / n : NaN;
    return { isr, staleness, isrW };
  }
}
