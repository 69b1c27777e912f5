"""The page's client rules (jam_page/client.js, run by Node.js) against the Python client.

One seeded scenario per (I, GL): a melody, answers that come early, late, superseded, expired,
lost, or with ``unknown_session``. The Python :class:`SongClient` is driven through it
by a small discrete-event loop (a stand-in server answering with a fixed pattern), and
every step is written down; the JavaScript :class:`JamClient` then replays the same
steps, and it must send the same requests (ticks, melody chunks, contexts), play the
same frames (I(t), S(t), request, fresh), write the same number of frames per answer
and end with the same request statuses.
"""

from __future__ import annotations

import heapq
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from streammuse.client.session import SongClient
from streammuse.datasets.frames import cap_frame_notes, part_to_frames
from streammuse.datasets.song import note_array
from streammuse.contract import InferResponse

CLIENT_JS = Path(__file__).parents[1] / "streammuse" / "serving" / "jam_page" / "client.js"
N_TICKS, TAU_MS = 96, 125.0
DRIVER = """
import { readFileSync } from 'node:fs';
import { JamClient } from './client.mjs';
const trace = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const c = new JamClient({ interval: trace.interval, genLen: trace.gen_len, nTicks: trace.n_ticks });
const notes = new Map(), recs = new Map(), out = { sends: [], played: [], written: [] };
for (const step of trace.steps) {
  if (step.op === 'on') notes.set(step.tick, c.input.noteOn(step.pitch, step.tick));
  else if (step.op === 'off') c.input.noteOff(notes.get(step.start), step.tick);
  else if (step.op === 'tick') {
    const { played, send } = c.onTick(step.tick, step.now);
    if (played) out.played.push([played.available, played.staleness, played.requestId, played.fresh]);
    if (send) { recs.set(send.rec.request_id, send.rec); out.sends.push(send.body); }
  } else if (step.op === 'reply') out.written.push(c.onReply(recs.get(step.id), step.response, step.now));
  else if (step.op === 'error') c.onError(recs.get(step.id), step.now, step.unknown);
}
c.finishPending();
out.statuses = c.requests.map((r) => r.status);
out.moved = c.input.moved;
out.metrics = c.metrics();
console.log(JSON.stringify(out));
"""


def _answer(s: int, gen_len: int) -> list:
    """The stand-in server's accompaniment for ticks s .. s+GL-1 (a frame may be silent)."""
    return [[[40 + (s + i) % 30, 1 + (s + i) % 3]] if (s + i) % 5 else [] for i in range(gen_len)]


def python_trace(interval: int, gen_len: int, seed: int) -> dict:
    """Run the Python client through the scenario; returns the steps and what it did."""
    rng = np.random.default_rng(seed)
    melody = note_array([(t, 1, 60 + t % 12) for t in range(N_TICKS) if t % 3 != 2])
    client = SongClient("song", part_to_frames(cap_frame_notes(melody)[0], N_TICKS), interval, gen_len, TAU_MS)
    events: list = [(t * TAU_MS, 0, t, None) for t in range(-1, N_TICKS)]
    heapq.heapify(events)
    steps, sends, written, seq = [], [], [], 0
    while events:
        now, kind, key, payload = heapq.heappop(events)
        if kind == 0:
            steps += [{"op": "on", "tick": int(t), "pitch": int(p)} for t, _, p in melody if t == key]
            steps += [{"op": "off", "start": int(t), "tick": int(key)} for t, d, _ in melody if t + d == key]
            steps.append({"op": "tick", "tick": key, "now": now})
            for rec, req in client.on_tick(key, now):
                sends.append(req.model_dump(exclude_none=True))
                fate, rtt = rng.choice(["ok", "ok", "ok", "ok", "superseded", "expired", "lost", "unknown"]), rng.uniform(10, 400)
                seq += 1
                heapq.heappush(events, (now + rtt, 1, seq, (rec, str(fate))))
        else:
            rec, fate = payload
            if fate in ("ok", "superseded", "expired"):
                response = InferResponse(status=fate, request_tick=rec.request_tick, inference_ms=5.0,
                                         accompaniment=_answer(rec.request_tick, rec.gen_len) if fate == "ok" else [])
                steps.append({"op": "reply", "id": rec.request_id, "now": now, "response": response.model_dump()})
                written.append(client.on_reply(rec, response, now, math.nan))
            else:
                steps.append({"op": "error", "id": rec.request_id, "now": now, "unknown": fate == "unknown"})
                client.on_error(rec, now, unknown_session=fate == "unknown")
    client.finish_pending()
    played = [[t.available == 1, t.staleness, t.request_id, t.fresh] for t in client.tick_records()]
    return {"interval": interval, "gen_len": gen_len, "n_ticks": N_TICKS, "steps": steps,
            "expect": {"sends": sends, "played": played, "written": written,
                       "statuses": [r.status for r in client.requests]}}


def run_js(trace: dict, tmp_path: Path) -> dict:
    node = shutil.which("node")
    assert node, "Node.js (node) is needed to run the page's client.js outside a browser"
    shutil.copy(CLIENT_JS, tmp_path / "client.mjs")
    (tmp_path / "driver.mjs").write_text(DRIVER)
    (tmp_path / "trace.json").write_text(json.dumps(trace))
    done = subprocess.run([node, str(tmp_path / "driver.mjs"), str(tmp_path / "trace.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("interval, gen_len, seed", [(1, 3, 0), (2, 5, 1), (4, 9, 2), (7, 9, 5)])
def test_page_rules_match_the_python_client(interval, gen_len, seed, tmp_path):
    trace = python_trace(interval, gen_len, seed)
    expect, got = trace["expect"], run_js(trace, tmp_path)
    statuses = set(expect["statuses"])
    assert {"ok", "late", "failed"} <= statuses  # the scenario exercises the rules
    assert any("context" in s for s in expect["sends"])  # and a rebuild after unknown_session
    assert got["sends"] == json.loads(json.dumps(expect["sends"]))
    assert got["played"] == expect["played"]
    assert got["written"] == expect["written"]
    assert got["statuses"] == expect["statuses"]
    assert got["moved"] == 0
    hits = [p for p in expect["played"] if p[0]]
    assert got["metrics"]["isr"] == pytest.approx(len(hits) / N_TICKS)
    assert got["metrics"]["staleness"] == pytest.approx(np.mean([p[1] for p in hits]))


HELD_NOTES = """
import { MelodyInput } from './client.mjs';
const m = new MelodyInput();
const long = m.noteOn(60, 0);                   // held over ticks 0-2
const first = m.frames(0, 1, 0);                // sent at the onset of tick 0
const ctx = m.frames(0, 3, 2);                  // a context re-sent at tick 2, the note still held
m.noteOff(long, 3);
const late = m.noteOn(62, 2);                   // pressed for tick 2 after it was sent: moved to 3
m.noteOff(late, 4);
const full = [...Array(5).keys()].map((i) => m.noteOn(40 + i, 5)); // a fifth note in one tick
console.log(JSON.stringify({ first, ctx, played: m.played(6), moved: m.moved, dropped: m.dropped, fifth: full[4] }));
"""


def test_held_and_late_notes(tmp_path):
    """A held note is sent with the ticks it has sounded so far; the take keeps its real
    length; a note for a tick already sent moves to the next open tick; a frame holds 4."""
    shutil.copy(CLIENT_JS, tmp_path / "client.mjs")
    (tmp_path / "held.mjs").write_text(HELD_NOTES)
    node = shutil.which("node")
    assert node, "Node.js (node) is needed to run the page's client.js outside a browser"
    out = json.loads(subprocess.run([node, str(tmp_path / "held.mjs")], capture_output=True, text=True,
                                    timeout=60, check=True).stdout)
    assert out["first"] == [[[60, 1]]]
    assert out["ctx"] == [[[60, 3]], [], []]  # sounded over ticks 0, 1 and 2 so far
    assert out["played"][:2] == [[0, 3, 60], [3, 1, 62]]
    assert out["moved"] == 1 and out["dropped"] == 1 and out["fifth"] is None
    assert len(out["played"]) == 6
