// The page's sound: a piano-like additive voice (the recipe of streammuse/audio/synth.py,
// whose numbers the server sends in /jam/config.json) and a metronome click. All made
// with Web Audio nodes in the page; nothing is loaded from anywhere.

export class Synth {
  constructor(ctx, voice) {
    this.ctx = ctx;
    this.voice = voice;
    this.out = ctx.createDynamicsCompressor(); // keeps dense chords from clipping
    this.out.connect(ctx.destination);
    const p = voice.partials;
    const real = new Float32Array(p.length + 1);
    const imag = new Float32Array(p.length + 1);
    const sum = p.reduce((a, b) => a + b, 0);
    p.forEach((amp, i) => { imag[i + 1] = amp / sum; }); // sines, as the numpy voice
    this.wave = ctx.createPeriodicWave(real, imag, { disableNormalization: true });
    this.voices = 0; // sounding now (for the page's stats)
  }

  decayS(pitch) {
    const v = this.voice;
    return v.decay_s_at_c4 * 2 ** (-(pitch - 60) / v.decay_halving_semitones);
  }

  // Start a note at audio time `at`; returns a handle whose stop(time) releases it.
  start(pitch, at, part) {
    const { ctx, voice } = this;
    const osc = ctx.createOscillator();
    osc.setPeriodicWave(this.wave);
    osc.frequency.value = 440 * 2 ** ((pitch - 69) / 12);
    const env = ctx.createGain();
    const peak = voice.gain[part];
    env.gain.setValueAtTime(0, at);
    env.gain.linearRampToValueAtTime(peak, at + voice.attack_s);
    env.gain.setTargetAtTime(0, at + voice.attack_s, this.decayS(pitch));
    osc.connect(env).connect(this.out);
    osc.start(at);
    this.voices += 1;
    let stopped = false;
    const stop = (when) => {
      if (stopped) return;
      stopped = true;
      const t = Math.max(when, ctx.currentTime, at + voice.attack_s);
      env.gain.cancelScheduledValues(t);
      env.gain.setTargetAtTime(0, t, voice.release_s);
      osc.stop(t + 5 * voice.release_s);
      osc.onended = () => { this.voices -= 1; osc.disconnect(); env.disconnect(); };
    };
    return { stop };
  }

  // A note of known length: start at `at`, release at `until`.
  play(pitch, at, until, part) {
    this.start(pitch, at, part).stop(until);
  }

  click(at, accent) {
    const { ctx } = this;
    const osc = ctx.createOscillator();
    osc.frequency.value = accent ? 1568 : 1046;
    const env = ctx.createGain();
    env.gain.setValueAtTime(this.voice.gain.metronome * (accent ? 1 : 0.6), at);
    env.gain.exponentialRampToValueAtTime(0.0001, at + 0.05);
    osc.connect(env).connect(this.out);
    osc.start(at);
    osc.stop(at + 0.06);
    osc.onended = () => { osc.disconnect(); env.disconnect(); };
  }
}
