// Melody input: the computer keyboard (a piano row from A = C4) and Web MIDI. Both call
// the same press(pitch) / release(pitch), which is the page's only input path.

const KEY_SEMITONES = {
  KeyA: 0, KeyW: 1, KeyS: 2, KeyE: 3, KeyD: 4, KeyF: 5, KeyT: 6, KeyG: 7, KeyY: 8,
  KeyH: 9, KeyU: 10, KeyJ: 11, KeyK: 12, KeyO: 13, KeyL: 14, KeyP: 15, Semicolon: 16,
};
const MIN_PITCH = 21;
const MAX_PITCH = 108;

export function attachKeyboard(target, press, release) {
  let base = 60;
  const down = new Map(); // code -> pitch, so an octave change mid-note releases the right key
  target.addEventListener('keydown', (e) => {
    if (e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target && ['INPUT', 'SELECT', 'TEXTAREA'].includes(e.target.tagName)) return;
    if (e.code === 'KeyZ') { base = Math.max(24, base - 12); return; }
    if (e.code === 'KeyX') { base = Math.min(96, base + 12); return; }
    const semis = KEY_SEMITONES[e.code];
    if (semis === undefined || down.has(e.code)) return;
    const pitch = base + semis;
    if (pitch < MIN_PITCH || pitch > MAX_PITCH) return;
    e.preventDefault();
    down.set(e.code, pitch);
    press(pitch);
  });
  target.addEventListener('keyup', (e) => {
    const pitch = down.get(e.code);
    if (pitch === undefined) return;
    down.delete(e.code);
    release(pitch);
  });
}

// Web MIDI: fills the <select> with inputs; the chosen one drives press / release.
export async function attachMidi(select, press, release) {
  if (!navigator.requestMIDIAccess) {
    select.disabled = true;
    select.title = 'this browser has no Web MIDI';
    return;
  }
  let access;
  try {
    access = await navigator.requestMIDIAccess();
  } catch (err) {
    select.disabled = true;
    select.title = `Web MIDI refused: ${err}`;
    return;
  }
  const onMessage = (msg) => {
    const [status, pitch, velocity] = msg.data;
    const kind = status & 0xf0;
    if (pitch < MIN_PITCH || pitch > MAX_PITCH) return;
    if (kind === 0x90 && velocity > 0) press(pitch);
    else if (kind === 0x80 || (kind === 0x90 && velocity === 0)) release(pitch);
  };
  const refresh = () => {
    const chosen = select.value;
    select.querySelectorAll('option[data-midi]').forEach((o) => o.remove());
    for (const input of access.inputs.values()) {
      const o = document.createElement('option');
      o.value = input.id;
      o.textContent = input.name;
      o.dataset.midi = '1';
      select.appendChild(o);
    }
    select.value = chosen;
  };
  select.addEventListener('change', () => {
    for (const input of access.inputs.values()) input.onmidimessage = input.id === select.value ? onMessage : null;
  });
  access.onstatechange = refresh;
  refresh();
  if (access.inputs.size && !select.value) {
    select.value = access.inputs.values().next().value.id;
    select.dispatchEvent(new Event('change'));
  }
}
