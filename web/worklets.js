// AudioWorklet processors of the voxrt page (loaded with audioWorklet.addModule).
//   voxrt-capture: microphone → 24 kHz PCM16 chunks of 20 ms, posted with their level and the
//                  AudioContext time of their last sample.
//   voxrt-player:  24 kHz float chunks → the output, back to back with no gap; reports the first
//                  sample it plays and how much it has played when told to stop.
'use strict';

const WIRE_RATE = 24000;

// Streaming linear-interpolation resampler. `pos` is the next output's position in input samples,
// relative to the current block; position -1 is the last sample of the previous block.
class Resampler {
  constructor(inRate, outRate) {
    this.step = inRate / outRate;
    this.pos = 0;
    this.prev = 0;
  }
  // Appends the resampled `input` to `out` (an Array of numbers).
  push(input, out) {
    const n = input.length;
    if (n === 0) return;
    let pos = this.pos;
    while (pos <= n - 1) {
      const i = Math.floor(pos);
      const frac = pos - i;
      const a = i < 0 ? this.prev : input[i];
      const b = i + 1 < n ? input[i + 1] : a;
      out.push(a + (b - a) * frac);
      pos += this.step;
    }
    this.pos = pos - n;
    this.prev = input[n - 1];
  }
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new Resampler(sampleRate, WIRE_RATE);
    this.chunk = WIRE_RATE / 50;  // 20 ms
    this.pending = [];
    this.sumSquares = 0;
    this.peak = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      const ch = input[0];
      // a smoother low-pass than linear interpolation alone: average each pair when the device
      // runs at twice the wire rate or more (48 kHz, the usual case)
      let x = ch;
      if (sampleRate >= 2 * WIRE_RATE) {
        x = new Float32Array(ch.length);
        let last = this.lastIn || 0;
        for (let i = 0; i < ch.length; i++) {
          x[i] = 0.5 * (ch[i] + last);
          last = ch[i];
        }
        this.lastIn = last;
      }
      const start = this.pending.length;
      this.resampler.push(x, this.pending);
      for (let i = start; i < this.pending.length; i++) {
        const v = this.pending[i];
        this.sumSquares += v * v;
        const a = Math.abs(v);
        if (a > this.peak) this.peak = a;
      }
      // time of the block's last sample on the AudioContext clock
      const blockEnd = currentTime + ch.length / sampleRate;
      while (this.pending.length >= this.chunk) {
        const pcm = new Int16Array(this.chunk);
        for (let i = 0; i < this.chunk; i++) {
          const v = Math.max(-1, Math.min(1, this.pending[i]));
          pcm[i] = v < 0 ? v * 0x8000 : v * 0x7fff;
        }
        this.pending.splice(0, this.chunk);
        const rms = Math.sqrt(this.sumSquares / this.chunk);
        this.port.postMessage(
            {pcm: pcm.buffer, rms, peak: this.peak,
             time: blockEnd - this.pending.length / WIRE_RATE},
            [pcm.buffer]);
        this.sumSquares = 0;
        this.peak = 0;
      }
    }
    return true;
  }
}

class PlayerProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];     // Float32Array chunks at the output rate
    this.offset = 0;     // read position in queue[0]
    this.queued = 0;     // frames waiting
    this.played = 0;     // frames played since the last clear (this answer)
    this.received = 0;   // 24 kHz samples pushed since the last clear
    this.silent = 0;     // output frames of silence since the queue last ran dry
    this.gaps = 0;       // frames of silence between two pieces of this answer (underruns)
    this.started = false;
    this.resampler = new Resampler(WIRE_RATE, sampleRate);
    this.port.onmessage = (e) => this.onMessage(e.data);
  }
  onMessage(m) {
    if (m.type === 'push') {
      const out = [];
      this.resampler.push(new Float32Array(m.samples), out);
      this.received += m.samples.byteLength / 4;
      if (this.started && this.queued === 0) {  // the answer went on after running dry
        this.gaps += this.silent;
        this.silent = 0;
      }
      if (out.length > 0) {
        this.queue.push(Float32Array.from(out));
        this.queued += out.length;
      }
    } else if (m.type === 'clear') {
      // what was played of this answer, in 24 kHz samples (what the server counts)
      const played24 = Math.round(this.played * WIRE_RATE / sampleRate);
      this.port.postMessage({type: 'cleared', token: m.token, played: played24,
                             gapMs: Math.round(this.gaps * 1000 / sampleRate)});
      this.queue = [];
      this.offset = 0;
      this.queued = 0;
      this.played = 0;
      this.received = 0;
      this.silent = 0;
      this.gaps = 0;
      this.started = false;
      this.resampler = new Resampler(WIRE_RATE, sampleRate);
    }
  }
  process(inputs, outputs) {
    const out = outputs[0][0];
    let i = 0;
    if (this.queued > 0 && !this.started) {
      this.started = true;
      this.port.postMessage({type: 'first', time: currentTime});
    }
    const hadAudio = this.queued > 0;
    while (i < out.length && this.queue.length > 0) {
      const head = this.queue[0];
      const n = Math.min(out.length - i, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), i);
      i += n;
      this.offset += n;
      this.queued -= n;
      this.played += n;
      if (this.offset >= head.length) {
        this.queue.shift();
        this.offset = 0;
      }
    }
    if (this.started) this.silent += out.length - i;
    for (; i < out.length; i++) out[i] = 0;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (hadAudio && this.queued === 0) {
      this.port.postMessage({type: 'drained', received: this.received,
                             played: Math.round(this.played * WIRE_RATE / sampleRate),
                             gapMs: Math.round(this.gaps * 1000 / sampleRate)});
    }
    return true;
  }
}

registerProcessor('voxrt-capture', CaptureProcessor);
registerProcessor('voxrt-player', PlayerProcessor);
