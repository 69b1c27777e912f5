// The jam page: the clock (ticks on the Web Audio clock), the network (the JSON API of
// docs/design.md section 3), sound, the live view and the take. The rules themselves
// are in client.js.
import { JamClient } from './client.js';
import { Synth } from './audio.js';
import { PianoRoll } from './roll.js';
import { attachKeyboard, attachMidi } from './input.js';

const TICKS_PER_BEAT = 4;
const COUNT_IN_TICKS = 16; // one bar of 4/4
const START_DELAY_S = 0.2; // from Start to the first count-in click
const METRONOME_AHEAD_S = 0.15; // clicks are scheduled this far ahead, at their exact onsets
const PUMP_MS = 3; // how often the clock role looks at the audio clock
const DRAIN_MS = 2000; // after the last tick, answers still in flight are awaited (wall.py)
const REQUEST_TIMEOUT_MS = 10000;
const SAMPLING = { temperature: 1.0, top_k: 0, top_p: 0.95 }; // the replay's defaults

const $ = (id) => document.getElementById(id);
const apiBase = new URL('../', window.location.href); // the page is at <server>/jam/
const state = {
  phase: 'idle', token: sessionStorage.getItem('streammuse-token') || '', config: null, modelId: '',
  ctx: null, synth: null, client: null, t0: 0, tauMs: 125, nTicks: Infinity, nextTick: 0, nextClick: 0,
  sessionId: null, settings: null, held: new Map(), lateness: [], scheduled: [], result: null, take: null,
  timer: null, drawTimer: null,
};
window.jam = state; // for the browser test and for the curious

async function api(method, path, body, sessionId, base = apiBase) {
  const headers = { 'content-type': 'application/json' };
  if (state.token) headers.authorization = `Bearer ${state.token}`;
  if (sessionId) headers['x-session-id'] = sessionId;
  const response = await fetch(new URL(path, base), {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  return { status: response.status, data };
}

const nowMs = () => (state.ctx.currentTime - state.t0) * 1000; // ms from the onset of tick 0
const onsetS = (tick) => state.t0 + (tick * state.tauMs) / 1000;
state.nowMs = nowMs;

// -- the clock role ---------------------------------------------------------------------
function pump(now = nowMs()) {
  if (state.phase !== 'count-in' && state.phase !== 'playing') return;
  scheduleClicks();
  while (state.nextTick < state.nTicks && state.nextTick * state.tauMs <= now) {
    onset(state.nextTick, now);
    state.nextTick += 1;
  }
  if (state.nextTick >= 0 && state.phase === 'count-in') setPhase('playing');
  if (state.nextTick >= state.nTicks && now >= state.nTicks * state.tauMs) finish(); // the end of the last tick
}

function onset(tick, now) {
  state.lateness.push(now - tick * state.tauMs);
  if (tick < -1) return;
  const { played, send } = state.client.onTick(tick, now);
  if (played && played.available) {
    const at = Math.max(state.ctx.currentTime, onsetS(tick));
    for (const [pitch, dur] of played.frame) state.synth.play(pitch, at, onsetS(tick + dur), 'accompaniment');
    state.scheduled.push({ tick, at_ms: (at - state.t0) * 1000 });
  }
  if (send) infer(send.rec, send.body);
}

function scheduleClicks() {
  const horizon = state.ctx.currentTime + METRONOME_AHEAD_S;
  while (onsetS(state.nextClick) <= horizon && state.nextClick < state.nTicks) {
    const t = state.nextClick;
    if (t < 0 || $('metronome').checked) state.synth.click(onsetS(t), t % 16 === 0);
    state.nextClick += TICKS_PER_BEAT;
  }
}

// -- the network -------------------------------------------------------------------------
async function infer(rec, body) {
  const sid = state.sessionId;
  let result = null;
  try {
    result = await api('POST', `v1/sessions/${encodeURIComponent(sid)}/infer`, body, sid);
  } catch (err) {
    result = { status: 0, timedOut: err && err.name === 'TimeoutError', data: { detail: String(err) } };
  }
  if (rec.status !== 'pending') return; // the take already ended
  const now = nowMs();
  pump(now); // onsets due before this arrival are played first: the strict rule
  if (result.status === 200) {
    state.client.onReply(rec, result.data, now);
  } else if (result.status === 404 && result.data && result.data.code === 'unknown_session') {
    state.client.onError(rec, now, true);
    openSession().catch(() => {}); // the next request re-sends the context
  } else {
    state.client.onError(rec, now, false, Boolean(result.timedOut));
    if (result.status === 401) askToken();
  }
}

async function openSession() {
  const s = state.settings;
  const r = await api('POST', 'v1/sessions', { bpm: s.bpm, sampling: SAMPLING, seed: s.seed });
  if (r.status === 401) { askToken(); throw new Error('this server needs a token'); }
  if (r.status !== 200) throw new Error(`could not open a session (${r.status} ${r.data && r.data.detail})`);
  state.sessionId = r.data.session_id;
  state.modelId = r.data.model_id;
  return r.data;
}

// -- input -------------------------------------------------------------------------------
function press(pitch) {
  if (!state.ctx) return;
  state.held.get(pitch)?.voice.stop(state.ctx.currentTime);
  const voice = state.synth.start(pitch, state.ctx.currentTime, 'melody');
  let note = null;
  if (state.phase === 'count-in' || state.phase === 'playing') {
    const now = nowMs();
    pump(now);
    const tick = Math.round(now / state.tauMs);
    if (tick >= 0 && tick < state.nTicks && state.phase === 'playing') note = state.client.input.noteOn(pitch, tick);
  }
  state.held.set(pitch, { voice, note });
}

function release(pitch) {
  const h = state.held.get(pitch);
  if (!h) return;
  state.held.delete(pitch);
  h.voice.stop(state.ctx.currentTime);
  if (h.note && state.client) state.client.input.noteOff(h.note, Math.round(nowMs() / state.tauMs));
}

// -- start, stop, the take ---------------------------------------------------------------
async function start() {
  if (!state.ready || (state.phase !== 'idle' && state.phase !== 'done')) return;
  const bpm = Number($('bpm').value);
  let interval = Number($('interval').value);
  let genLen = Number($('genlen').value);
  let pairSource = 'manual';
  if ($('auto').checked) {
    const r = await api('GET', `jam/plan?bpm=${bpm}`);
    if (r.status !== 200) { showTake(`planner: ${r.data ? r.data.detail : r.status}`); return; }
    ({ interval, gen_len: genLen } = r.data);
    $('interval').value = interval;
    $('genlen').value = genLen;
    pairSource = 'planner';
  }
  const bars = Number($('bars').value);
  state.settings = { bpm, interval, genLen, seed: Number($('seed').value), bars, pairSource };
  state.ctx = state.ctx || new AudioContext({ latencyHint: 'interactive' });
  await state.ctx.resume();
  state.synth = state.synth || new Synth(state.ctx, state.config.voice);
  try {
    await openSession();
  } catch (err) { showTake(String(err.message || err)); return; }
  Object.assign(state, {
    tauMs: 60000 / (TICKS_PER_BEAT * bpm), nTicks: bars > 0 ? bars * 16 : Infinity, result: null, take: null,
    lateness: [], scheduled: [], nextTick: -COUNT_IN_TICKS, nextClick: -COUNT_IN_TICKS,
  });
  state.client = new JamClient({ interval, genLen, nTicks: state.nTicks });
  state.t0 = state.ctx.currentTime + START_DELAY_S + (COUNT_IN_TICKS * state.tauMs) / 1000;
  setPhase('count-in');
  showTake('');
  $('start').disabled = true;
  $('stop').disabled = false;
  state.timer = setInterval(() => pump(), PUMP_MS);
  state.drawTimer = setInterval(draw, 40);
}

function stop() {
  if (state.phase === 'count-in') { state.nTicks = 0; finish(); return; }
  if (state.phase !== 'playing') return;
  const stopTick = state.nextTick; // ticks 0 .. stopTick-1 were played
  state.nTicks = stopTick;
  Object.assign(state.client.inference, { nTicks: stopTick });
  state.client.buffer.nTicks = stopTick;
  finish();
}

async function finish() {
  if (state.phase !== 'playing' && state.phase !== 'count-in') return;
  clearInterval(state.timer);
  setPhase('draining');
  $('stop').disabled = true;
  const deadline = performance.now() + DRAIN_MS;
  while (state.client.requests.some((r) => r.status === 'pending') && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  state.client.finishPending();
  for (const pitch of [...state.held.keys()]) release(pitch);
  api('DELETE', `v1/sessions/${encodeURIComponent(state.sessionId)}`, undefined, state.sessionId).catch(() => {});
  clearInterval(state.drawTimer);
  draw();
  if (state.nTicks > 0) await saveTake(); else showTake('stopped during the count-in: nothing to keep');
  setPhase('done');
  $('start').disabled = false;
}

function buildTake() {
  const s = state.settings;
  const c = state.client;
  return {
    name: 'take', bpm: s.bpm, interval: s.interval, gen_len: s.genLen, seed: s.seed, sampling: SAMPLING,
    model_id: state.modelId, server: apiBase.origin, pair_source: s.pairSource, n_ticks: state.nTicks,
    melody: c.input.played(state.nTicks),
    requests: c.requests.map((r) => ({ ...r, inference_ms: r.inference_ms ?? null, queue_ms: r.queue_ms ?? null })),
    played: c.played.map((p) => ({ tick: p.tick, request_id: p.requestId, staleness: p.staleness })),
    moved_notes: c.input.moved, dropped_notes: c.input.dropped,
    tick_lateness_ms: state.lateness.slice(COUNT_IN_TICKS - 1), user_agent: navigator.userAgent,
  };
}

async function saveTake() {
  setPhase('saving');
  state.take = buildTake();
  let r;
  try {
    r = await api('POST', 'takes', state.take, null, window.location.href);
  } catch (err) {
    r = { status: 0, data: { detail: String(err) } };
  }
  if (r.status === 200) {
    state.result = r.data;
    showTake(`take saved: ${r.data.run}\nISR ${fmt(r.data.isr)}  Staleness ${fmt(r.data.staleness)}  ISR_w ${fmt(r.data.isr_w)}`
      + `  (computed by the server from the saved take)\nstreammuse evaluate ${r.data.run}\nstreammuse render ${r.data.run} --format wav`);
    return;
  }
  state.result = { error: r.data ? r.data.detail : `status ${r.status}` };
  const blob = new Blob([JSON.stringify(state.take)], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'take.json';
  a.textContent = 'download take.json';
  showTake(`the server did not keep the take (${state.result.error}).\n`
    + 'Save it, then write its run folder here with: streammuse jam --import take.json\n');
  $('take').appendChild(a);
}

// -- the view ----------------------------------------------------------------------------
const fmt = (v, digits = 3) => (Number.isFinite(v) ? v.toFixed(digits) : '-');
const pct = (xs, q) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

function setPhase(phase) { state.phase = phase; $('phase').textContent = phase; }
function showTake(text) { $('take').textContent = text; }

function draw() {
  const c = state.client;
  if (!c || !state.ctx) return;
  const nowTick = Math.min(nowMs() / state.tauMs, state.nTicks);
  state.roll.draw({ nowTick, melody: c.input.played(Math.ceil(nowTick) + 1), played: c.played, upcoming: c.buffer.upcoming() });
  const m = c.metrics();
  $('tick').textContent = Math.floor(nowTick);
  $('isr').textContent = fmt(m.isr);
  $('staleness').textContent = fmt(m.staleness);
  $('isrw').textContent = fmt(m.isrW);
  const by = (st) => c.requests.filter((r) => r.status === st).length;
  $('requests').textContent = `${by('ok')} ok / ${by('late')} late / ${by('superseded')} sup / ${by('expired')} expired / ${by('failed')} failed`;
  const rtts = c.requests.filter((r) => r.status === 'ok' || r.status === 'late').map((r) => r.recv_ms - r.send_ms);
  $('rtt').textContent = `${fmt(pct(rtts, 0.5), 0)} / ${fmt(pct(rtts, 0.95), 0)} ms`;
  $('lateness').textContent = `${fmt(pct(state.lateness, 0.99), 1)} ms`;
}

function askToken() {
  $('token-row').hidden = false;
  $('token').focus();
}

async function connect() {
  state.config = (await api('GET', 'config.json', undefined, null, window.location.href)).data;
  $('auto').disabled = !state.config.planner;
  $('auto').title = state.config.planner ? 'the planner picks (I, GL) for the BPM' : 'no planner profile on this server (streammuse jam --profile FILE)';
  [$('interval').value, $('genlen').value] = state.config.default_pair;
  const model = await api('GET', 'v1/model');
  if (model.status === 401) { askToken(); $('model').textContent = 'token needed'; return; }
  $('model').textContent = `model ${model.data.model_id} on ${model.data.device}; takes ${state.config.takes ? 'kept by the server' : 'downloaded'}`;
  setPhase('idle');
  state.ready = true;
}

function init() {
  state.roll = new PianoRoll($('roll'));
  attachKeyboard(document, press, release);
  attachMidi($('midi'), press, release);
  $('start').addEventListener('click', start);
  $('stop').addEventListener('click', stop);
  $('token-ok').addEventListener('click', () => {
    state.token = $('token').value.trim();
    sessionStorage.setItem('streammuse-token', state.token);
    $('token-row').hidden = true;
    connect().catch((err) => { $('model').textContent = String(err); });
  });
  connect().catch((err) => { $('model').textContent = `cannot reach the server: ${err}`; });
}

init();
