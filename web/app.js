// The voxrt page: one button starts a spoken conversation over the Realtime WebSocket
// (/v1/realtime on this server). Microphone audio goes up as 24 kHz PCM16 in 20 ms chunks; the
// server's VAD finds the turns; the answer's audio plays back to back while its text appears.
// Speaking over the answer stops it at once and tells the server how much of it was heard.
'use strict';

const RATE = 24000;
const VAD = {threshold: 0.5, prefixPaddingMs: 300, silenceMs: 500};
const $ = (id) => document.getElementById(id);

// What the page did and saw, for people (the event log) and for tests (window.voxrtPage).
const page = {
  state: 'idle',
  events: [],        // {dir: 'in'|'out', type, at} per WebSocket event, audio payloads left out
  turns: [],         // per answer: {itemId, latencyMs, afterStoppedMs, receivedMs, playedMs,
                     //   gapMs (silence inside the answer: audio arriving later than played),
                     //   deltaAfterStoppedMs (the first audio delta's arrival after speech_stopped),
                     //   pageMs (from that arrival to the first sample heard: the page's own part)}
  audioDeltas: 0,
  textChars: 0,
  info: null,        // the /v1/models entry's `voxrt` object
  audio: null,       // the AudioContext's sampleRate, baseLatency and outputLatency (s)
  lastError: null,
};
window.voxrtPage = page;

let ctx = null, micStream = null, captureNode = null, playerNode = null, ws = null;
let sentSamples = 0;      // samples appended since the session began (the server's stream time)
let chunkTimes = [];      // [{end: sample count after the chunk, time: AudioContext time}]
let speechActive = false; // between speech_started and speech_stopped
let resp = null;          // the answer in progress or still playing
let lastStop = null;      // times of the last speech_stopped, until its turn is committed
let pendingTurn = null;   // the user's turn whose answer has not started playing
let clearToken = 0;
const clearWaiters = new Map();

// ---- display -------------------------------------------------------------------------------

const STATE_TEXT = {
  idle: 'Idle: press Start and speak',
  connecting: 'Connecting…',
  listening: 'Listening',
  thinking: 'Thinking…',
  speaking: 'Speaking: talk to interrupt',
  error: 'Error',
};

function setState(s, detail) {
  page.state = s;
  const el = $('state');
  el.dataset.state = s;
  let text = STATE_TEXT[s] || s;
  if (s === 'listening' && speechActive) text = 'Listening: hearing you';
  el.textContent = detail ? `${text}: ${detail}` : text;
  $('start').textContent = s === 'idle' || s === 'error' ? 'Start' : 'End conversation';
  $('stop').disabled = !(resp && (resp.active || resp.playing));
}

function logEvent(dir, type, summary) {
  page.events.push({dir, type, at: performance.now()});
  if (page.events.length > 5000) page.events.splice(0, 1000);
  if (type === 'input_audio_buffer.append' || type === 'response.output_audio.delta') return;
  const li = document.createElement('li');
  li.textContent = `${dir === 'in' ? '←' : '→'} ${type}${summary ? ' ' + summary : ''}`;
  const log = $('log');
  log.prepend(li);
  while (log.children.length > 200) log.lastChild.remove();
}

function showError(message) {
  page.lastError = message;
  $('error').textContent = message;
  $('error').hidden = false;
}

function addBubble(who, text) {
  const div = document.createElement('div');
  div.className = `turn ${who}`;
  const label = document.createElement('span');
  label.className = 'who';
  label.textContent = who === 'user' ? 'You' : 'voxrt';
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  const meta = document.createElement('span');
  meta.className = 'meta';
  div.append(label, body, meta);
  $('transcript').append(div);
  $('transcript').scrollTop = $('transcript').scrollHeight;
  return div;
}

function setLevel(rms) {
  const db = rms > 0 ? 20 * Math.log10(rms) : -100;
  const frac = Math.max(0, Math.min(1, (db + 60) / 60));
  $('level-bar').style.width = `${(frac * 100).toFixed(1)}%`;
  $('level-db').textContent = db > -100 ? `${db.toFixed(0)} dBFS` : '–∞ dBFS';
}

// ---- model info ----------------------------------------------------------------------------

async function loadInfo() {
  try {
    const r = await fetch('/v1/models');
    const j = await r.json();
    const m = j.data && j.data[0];
    if (!m) throw new Error('no model listed');
    page.info = m.voxrt || {};
    $('model').textContent = m.id;
    const voices = page.info.chat_voices && page.info.chat_voices.length
        ? page.info.chat_voices : ['default'];
    const sel = $('voice');
    sel.replaceChildren();
    for (const v of voices) {
      const o = document.createElement('option');
      o.value = v;
      o.textContent = v;
      sel.append(o);
    }
    sel.disabled = voices.length < 2;
    $('voice-note').textContent = voices.length < 2
        ? 'speech chat answers in the model’s one chat voice'
        : '';
    if (page.info.random_weights) {
      const ck = page.info.checkpoint || {};
      $('banner').hidden = false;
      $('banner-detail').textContent = ck.size ? ` (checkpoint size “${ck.size}”)` : '';
    }
  } catch (e) {
    showError(`could not read /v1/models: ${e.message}`);
  }
}

// ---- the session ---------------------------------------------------------------------------

function send(ev) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify(ev));
  logEvent('out', ev.type, ev.type === 'conversation.item.truncate'
      ? `${ev.item_id} at ${ev.audio_end_ms} ms` : '');
}

function sessionUpdate() {
  const session = {
    type: 'realtime',
    output_modalities: ['audio'],
    audio: {
      input: {
        format: {type: 'audio/pcm', rate: RATE},
        // The page, not the server, cuts an interrupted answer: it knows what was played.
        turn_detection: {
          type: 'server_vad',
          threshold: VAD.threshold,
          prefix_padding_ms: VAD.prefixPaddingMs,
          silence_duration_ms: VAD.silenceMs,
          create_response: true,
          interrupt_response: false,
        },
      },
      output: {format: {type: 'audio/pcm', rate: RATE}, voice: $('voice').value || 'default'},
    },
  };
  const instr = $('instructions').value.trim();
  if (instr) session.instructions = instr;
  send({type: 'session.update', session});
}

async function start() {
  $('error').hidden = true;
  if (!window.isSecureContext || !navigator.mediaDevices || !window.AudioWorkletNode) {
    // browsers give the microphone and audio worklets only to https:// and localhost pages
    showError('this browser allows the microphone only on https:// pages or on localhost: open ' +
              'the page as http://127.0.0.1:PORT/ on the server’s machine, forward the port over ' +
              'SSH, or serve it behind TLS');
    setState('error', 'microphone not allowed here');
    return;
  }
  setState('connecting');
  try {
    ctx = new AudioContext({latencyHint: 'interactive'});
    await ctx.audioWorklet.addModule('/static/worklets.js');
    micStream = await navigator.mediaDevices.getUserMedia({
      audio: {channelCount: 1, echoCancellation: true, noiseSuppression: true,
              autoGainControl: true},
    });
  } catch (e) {
    showError(`microphone: ${e.message}`);
    await stop();
    setState('error', 'no microphone');
    return;
  }
  const src = ctx.createMediaStreamSource(micStream);
  captureNode = new AudioWorkletNode(ctx, 'voxrt-capture', {numberOfOutputs: 1});
  const mute = ctx.createGain();
  mute.gain.value = 0;  // keeps the capture node pulled by the graph without hearing oneself
  src.connect(captureNode).connect(mute).connect(ctx.destination);
  playerNode = new AudioWorkletNode(ctx, 'voxrt-player', {outputChannelCount: [1]});
  playerNode.connect(ctx.destination);
  playerNode.port.onmessage = (e) => onPlayer(e.data);
  captureNode.port.onmessage = (e) => onCapture(e.data);
  if (ctx.state !== 'running') await ctx.resume();
  page.audio = {sampleRate: ctx.sampleRate, baseLatency: ctx.baseLatency,
                outputLatency: ctx.outputLatency};

  sentSamples = 0;
  chunkTimes = [];
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/realtime`;
  ws = new WebSocket(url);
  ws.onmessage = (e) => onServerEvent(JSON.parse(e.data));
  ws.onclose = (e) => {
    const wasOpen = page.state !== 'idle';
    ws = null;
    if (wasOpen) {
      stop();
      if (e.code !== 1000) {
        showError(`connection closed (${e.code}${e.reason ? ': ' + e.reason : ''})`);
        setState('error', 'disconnected');
      }
    }
  };
}

async function stop() {
  const w = ws;
  ws = null;
  if (w && w.readyState <= WebSocket.OPEN) w.close(1000);
  if (micStream) micStream.getTracks().forEach((t) => t.stop());
  micStream = null;
  if (ctx) await ctx.close().catch(() => {});
  ctx = captureNode = playerNode = null;
  resp = null;
  pendingTurn = null;
  lastStop = null;
  speechActive = false;
  setLevel(0);
  setState('idle');
}

function onCapture(m) {
  setLevel(m.rms);
  if (!ws || ws.readyState !== WebSocket.OPEN || page.state === 'connecting') return;
  const bytes = new Uint8Array(m.pcm);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000)
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  send({type: 'input_audio_buffer.append', audio: btoa(bin)});
  sentSamples += bytes.length / 2;
  chunkTimes.push({end: sentSamples, time: m.time});
  if (chunkTimes.length > 3000) chunkTimes.splice(0, 1000);  // 60 s kept
}

// AudioContext time at which the input sample at stream time `ms` was captured.
function captureTime(ms) {
  const s = ms * RATE / 1000;
  for (let i = chunkTimes.length - 1; i >= 0; i--) {
    if (i === 0 || chunkTimes[i - 1].end <= s)
      return chunkTimes[i].time - (chunkTimes[i].end - s) / RATE;
  }
  return null;
}

// Stops playback now; resolves to how much of the current answer was played (24 kHz samples).
function clearPlayer() {
  if (!playerNode) return Promise.resolve({played: 0});
  const token = ++clearToken;
  return new Promise((resolve) => {
    clearWaiters.set(token, resolve);
    playerNode.port.postMessage({type: 'clear', token});
  });
}

function onPlayer(m) {
  if (m.type === 'cleared') {
    const r = clearWaiters.get(m.token);
    clearWaiters.delete(m.token);
    if (r) r(m);
  } else if (m.type === 'first' && resp && !resp.firstPlayed) {
    resp.firstPlayed = true;
    resp.playing = true;
    const heard = m.time + (ctx && ctx.outputLatency ? ctx.outputLatency : 0);
    const t = resp.turn;
    if (t && t.endOfSpeech != null) {
      t.latencyMs = Math.round((heard - t.endOfSpeech) * 1000);
      t.afterStoppedMs = Math.round((heard - t.stopped) * 1000);
      resp.turnRecord.latencyMs = t.latencyMs;
      resp.turnRecord.afterStoppedMs = t.afterStoppedMs;
      if (resp.firstDeltaAt != null) {
        resp.turnRecord.deltaAfterStoppedMs = Math.round((resp.firstDeltaAt - t.stopped) * 1000);
        resp.turnRecord.pageMs = Math.round((heard - resp.firstDeltaAt) * 1000);
      }
      t.bubble.querySelector('.meta').textContent =
          `answer heard ${t.latencyMs} ms after you stopped speaking ` +
          `(${VAD.silenceMs} ms of it the VAD’s wait for silence; ` +
          `${t.afterStoppedMs} ms after it)`;
      $('latency').textContent = `${t.latencyMs} ms`;
    }
    setState('speaking');
  } else if (m.type === 'drained' && resp && m.received === resp.receivedSamples) {
    // everything received so far was played (a later push makes the queue busy again)
    resp.playedSamples = m.played;
    resp.turnRecord.gapMs = m.gapMs;
    resp.queueEmpty = true;
    if (!resp.active) finishAnswer();
  }
}

// Underruns are the server's (its audio came later than it played); shown so that they are seen.
function noteGaps(r) {
  const gap = r.turnRecord && r.turnRecord.gapMs;
  if (r.bubble && gap > 0)
    r.bubble.querySelector('.meta').textContent += ` (${gap} ms of gaps: audio arrived late)`;
}

function finishAnswer() {
  if (!resp) return;
  resp.playing = false;
  // (an interrupted answer's played length was taken when it was stopped)
  if (resp.turnRecord && !resp.interrupted)
    resp.turnRecord.playedMs = Math.round(resp.playedSamples * 1000 / RATE);
  noteGaps(resp);
  resp = null;
  setState(pendingTurn ? 'thinking' : 'listening');
}

// Stops the answer where the listener is: cancels its generation and cuts the conversation to
// what was played (one truncate, sent by the page; the session asks the server not to cut on its
// own, see sessionUpdate).
async function interrupt(reason) {
  const r = resp;
  if (!r || r.interrupted) return;
  r.interrupted = true;
  const generating = r.active;
  if (r.active && !r.cancelSent) {
    r.cancelSent = true;
    send({type: 'response.cancel'});
  }
  const {played, gapMs} = await clearPlayer();
  r.playing = false;
  const playedMs = Math.floor(played * 1000 / RATE);
  if (r.turnRecord) {
    r.turnRecord.playedMs = playedMs;
    r.turnRecord.gapMs = gapMs;
    r.turnRecord.interrupted = reason;
  }
  // Cut when less was heard than the server holds: less than was received, or, while the answer
  // was still being generated, anything (frames made after the last delta that arrived, and those
  // in flight, were never heard: the page drops deltas after its cancel).
  if (r.receivedSamples > 0 && !r.truncated && (played < r.receivedSamples || generating)) {
    r.truncated = true;
    send({type: 'conversation.item.truncate', item_id: r.itemId, content_index: 0,
          audio_end_ms: playedMs});
  }
  if (r.bubble) {
    r.bubble.classList.add('interrupted');
    const meta = r.bubble.querySelector('.meta');
    meta.textContent += ` (${reason} after ${(playedMs / 1000).toFixed(2)} s of audio)`;
  }
  noteGaps(r);
  if (resp === r && !r.active) resp = null;
  setState(pendingTurn ? 'thinking' : 'listening');
}

function onServerEvent(ev) {
  logEvent('in', ev.type, ev.type === 'error' ? ev.error.message : '');
  switch (ev.type) {
    case 'session.created':
      sessionUpdate();
      break;
    case 'session.updated':
      if (page.state === 'connecting') setState('listening');
      break;
    case 'input_audio_buffer.speech_started':
      speechActive = true;
      if (resp && (resp.active || resp.playing)) interrupt('interrupted');
      else if (page.state === 'listening') setState('listening');  // "hearing you"
      break;
    case 'input_audio_buffer.speech_stopped':
      speechActive = false;
      // the VAD reports the end after its silence: the speech itself ended that much earlier
      lastStop = {
        itemId: ev.item_id,
        endOfSpeech: captureTime(ev.audio_end_ms - VAD.silenceMs),
        stopped: captureTime(ev.audio_end_ms),
      };
      if (page.state === 'listening') setState('listening');
      break;
    case 'input_audio_buffer.committed':
      // the turn is in the conversation (too short a sound is dropped without this event)
      pendingTurn = lastStop && lastStop.itemId === ev.item_id
          ? lastStop : {itemId: ev.item_id, endOfSpeech: null, stopped: null};
      lastStop = null;
      pendingTurn.bubble = addBubble('user', '(speech)');
      if (!resp) setState('thinking');
      break;
    case 'response.created':
      resp = {id: ev.response.id, itemId: null, active: true, playing: false, firstPlayed: false,
              receivedSamples: 0, playedSamples: 0, turn: pendingTurn, bubble: null};
      pendingTurn = null;
      resp.turnRecord = {responseId: resp.id, latencyMs: null, afterStoppedMs: null};
      page.turns.push(resp.turnRecord);
      clearPlayer();  // a new answer replaces whatever still plays; its played count starts at 0
      setState('thinking');
      break;
    case 'response.output_item.added':
      if (resp) {
        resp.itemId = ev.item.id;
        resp.turnRecord.itemId = ev.item.id;
        resp.bubble = addBubble('assistant', '');
      }
      break;
    case 'response.output_audio_transcript.delta':
    case 'response.output_text.delta':
      if (resp && resp.bubble && !resp.cancelSent) {
        resp.bubble.querySelector('.text').textContent += ev.delta;
        page.textChars += ev.delta.length;
        $('transcript').scrollTop = $('transcript').scrollHeight;
      }
      break;
    case 'response.output_audio.delta': {
      if (!resp || resp.cancelSent || !playerNode) break;
      page.audioDeltas++;
      // on the clock of the player's 'first' time (render quanta of ~3 ms)
      if (resp.firstDeltaAt == null) resp.firstDeltaAt = ctx.currentTime;
      const bin = atob(ev.delta);
      const n = bin.length >> 1;
      const f = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        let v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
        if (v >= 0x8000) v -= 0x10000;
        f[i] = v / 32768;
      }
      resp.receivedSamples += n;
      resp.queueEmpty = false;
      resp.turnRecord.receivedMs = Math.round(resp.receivedSamples * 1000 / RATE);
      playerNode.port.postMessage({type: 'push', samples: f.buffer}, [f.buffer]);
      break;
    }
    case 'response.done':
      if (resp && resp.id === ev.response.id) {
        resp.active = false;
        resp.turnRecord.status = ev.response.status;
        if (resp.receivedSamples === 0 || resp.queueEmpty || resp.cancelSent) finishAnswer();
      }
      break;
    case 'conversation.item.truncated':
      for (const t of page.turns)
        if (t.itemId === ev.item_id) t.truncatedMs = ev.audio_end_ms;
      break;
    case 'error':
      // A cancel that crossed the answer's end on the wire: nothing was left to cancel.
      if (ev.error.code === 'response_cancel_not_active') break;
      // the server's own word on a request; shown, and kept for the log
      console.warn('voxrt server error:', ev.error.code, ev.error.message);
      showError(`${ev.error.code || 'error'}: ${ev.error.message}`);
      break;
  }
}

// ---- controls ------------------------------------------------------------------------------

$('start').addEventListener('click', () => {
  if (page.state === 'idle' || page.state === 'error') start();
  else stop();
});
$('stop').addEventListener('click', () => interrupt('stopped'));
$('instructions').addEventListener('change', () => {
  if (ws && page.state !== 'connecting') sessionUpdate();
});
$('voice').addEventListener('change', () => {
  if (ws && page.state !== 'connecting') sessionUpdate();
});

loadInfo();
setState('idle');
