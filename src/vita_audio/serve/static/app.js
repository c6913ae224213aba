// The VITA-Audio web page: record -> wav (16 kHz) -> POST /v1/chat/completions (stream) -> text and pcm16 audio
// deltas as they arrive; audio is scheduled on an AudioContext chunk by chunk, so playback starts before the
// answer is finished. `window.vita` exposes the page's state (the browser test reads it).
"use strict";
const $ = (id) => document.getElementById(id);
const IN_RATE = 16000;
const vita = window.vita = { answers: [], chunks: 0, playedSeconds: 0, audioState: null, recording: false,
                             busy: false, error: null };
let history = [];           // the conversation, OpenAI messages
let info = { sample_rate: 16000, model: "vita-audio", auth: false };
let player = null, playAt = 0;
let mic = null;             // { ctx, stream, node, blocks, rate }

async function init() {
  info = await (await fetch("/health")).json();
  $("model").textContent = info.model;
  $("keybox").hidden = !info.auth;
  $("key").value = localStorage.getItem("vita-key") || "";
  $("key").onchange = () => localStorage.setItem("vita-key", $("key").value);
  $("record").onclick = () => (vita.recording ? stopRecording() : startRecording());
  $("send").onclick = sendText;
  $("text").onkeydown = (e) => { if (e.key === "Enter") sendText(); };
  $("reset").onclick = () => { history = []; $("log").textContent = ""; };
}

function status(msg) { $("status").textContent = msg; }

function addTurn(cls, text) {
  const div = document.createElement("div");
  div.className = `turn ${cls}`;
  div.innerHTML = '<span class="body"></span><div class="meta"></div>';
  div.querySelector(".body").textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

// -- microphone ------------------------------------------------------------------------------------------------
async function startRecording() {
  if (vita.busy) return;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
  const ctx = new AudioContext();
  await ctx.audioWorklet.addModule("/static/capture-worklet.js");
  const node = new AudioWorkletNode(ctx, "capture");
  const blocks = [];
  node.port.onmessage = (e) => blocks.push(e.data);
  ctx.createMediaStreamSource(stream).connect(node);
  mic = { ctx, stream, node, blocks, rate: ctx.sampleRate };
  vita.recording = true;
  $("record").classList.add("on");
  $("record").textContent = "Stop and send";
  status("recording...");
}

async function stopRecording() {
  if (!mic) return;
  const { ctx, stream, node, blocks, rate } = mic;
  mic = null;
  vita.recording = false;
  $("record").classList.remove("on");
  $("record").textContent = "Record";
  node.disconnect();
  stream.getTracks().forEach((t) => t.stop());
  await ctx.close();
  const pcm = resample(concat(blocks), rate, IN_RATE);
  vita.recordedSeconds = pcm.length / IN_RATE;
  if (pcm.length < IN_RATE / 4) { status("recording too short"); return; }
  const part = { type: "input_audio", input_audio: { data: toBase64(wavFile(pcm, IN_RATE)), format: "wav" } };
  addTurn("user", `[speech, ${(pcm.length / IN_RATE).toFixed(1)} s]`);
  await ask({ role: "user", content: [part] });
}

function concat(blocks) {
  const out = new Float32Array(blocks.reduce((n, b) => n + b.length, 0));
  let o = 0;
  for (const b of blocks) { out.set(b, o); o += b.length; }
  return out;
}

function resample(x, from, to) {  // linear interpolation (speech band is far below both Nyquists)
  if (from === to) return x;
  const n = Math.floor(x.length * to / from), out = new Float32Array(n), r = from / to;
  for (let i = 0; i < n; i++) {
    const p = i * r, j = Math.floor(p), f = p - j;
    out[i] = x[j] * (1 - f) + (x[Math.min(j + 1, x.length - 1)] || 0) * f;
  }
  return out;
}

function wavFile(x, rate) {
  const buf = new ArrayBuffer(44 + 2 * x.length), v = new DataView(buf);
  const str = (o, s) => [...s].forEach((c, i) => v.setUint8(o + i, c.charCodeAt(0)));
  str(0, "RIFF"); v.setUint32(4, 36 + 2 * x.length, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
  v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data");
  v.setUint32(40, 2 * x.length, true);
  for (let i = 0; i < x.length; i++) v.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, x[i])) * 32767, true);
  return new Uint8Array(buf);
}

function toBase64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// -- playback --------------------------------------------------------------------------------------------------
function playPcm16(b64) {
  if (!player) player = new AudioContext({ sampleRate: info.sample_rate || 16000 });
  if (player.state === "suspended") player.resume();
  const raw = atob(b64), n = raw.length >> 1, f = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = raw.charCodeAt(2 * i) | (raw.charCodeAt(2 * i + 1) << 8);
    f[i] = (s >= 0x8000 ? s - 0x10000 : s) / 32768;
  }
  if (!n) return;
  const buf = player.createBuffer(1, n, info.sample_rate || 16000);
  buf.copyToChannel(f, 0);
  const src = player.createBufferSource();
  src.buffer = buf;
  src.connect(player.destination);
  playAt = Math.max(playAt, player.currentTime + 0.02);
  src.start(playAt);
  playAt += buf.duration;
  src.onended = () => { vita.playedSeconds += buf.duration; vita.audioState = player.state; };
  vita.chunks += 1;
  vita.audioState = player.state;
}

// -- a request -------------------------------------------------------------------------------------------------
function sendText() {
  const text = $("text").value.trim();
  if (!text || vita.busy) return;
  $("text").value = "";
  addTurn("user", text);
  ask({ role: "user", content: text });
}

async function ask(message) {
  vita.busy = true;
  history.push(message);
  const turn = addTurn("assistant", ""), body = turn.querySelector(".body"), meta = turn.querySelector(".meta");
  const answer = { text: "", firstAudioMs: null, chunks: 0, done: false, error: null, stats: null, usage: null };
  vita.answers.push(answer);
  const headers = { "Content-Type": "application/json" };
  if ($("key").value) headers.Authorization = `Bearer ${$("key").value}`;
  const req = { model: info.model, messages: history, stream: true, modalities: ["text", "audio"],
                audio: { format: "pcm16" }, stream_options: { include_usage: true } };
  if ($("mode").value) req.mode = $("mode").value;
  const t0 = performance.now();
  status("answering...");
  try {
    const res = await fetch("/v1/chat/completions", { method: "POST", headers, body: JSON.stringify(req) });
    if (!res.ok) throw new Error((await res.json()).error.message);
    const reader = res.body.getReader(), dec = new TextDecoder();
    let pending = "", stats = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += dec.decode(value, { stream: true });
      let cut;
      while ((cut = pending.indexOf("\n\n")) >= 0) {
        const line = pending.slice(0, cut).trim();
        pending = pending.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const ev = JSON.parse(data);
        if (ev.error) throw new Error(ev.error.message);
        if (ev.vita) stats = answer.stats = ev.vita;
        if (ev.usage) answer.usage = ev.usage;
        const d = (ev.choices[0] || {}).delta || {};
        const text = d.content || (d.audio && d.audio.transcript) || "";
        if (text) { answer.text += text; body.textContent = answer.text; }
        if (d.audio && d.audio.data) {
          if (answer.firstAudioMs === null) {
            answer.firstAudioMs = performance.now() - t0;
            meta.textContent = `first audio after ${answer.firstAudioMs.toFixed(0)} ms`;
          }
          answer.chunks += 1;
          playPcm16(d.audio.data);
        }
      }
    }
    answer.done = true;
    history.push({ role: "assistant", content: answer.text || " " });
    const srv = stats && stats.first_audio_s != null ? `, server ${(stats.first_audio_s * 1000).toFixed(0)} ms` : "";
    const first = answer.firstAudioMs === null ? "no audio" : `first audio after ${answer.firstAudioMs.toFixed(0)} ms${srv}`;
    meta.textContent = `${first} · ${(performance.now() - t0).toFixed(0)} ms total` +
                       (stats ? ` · mode ${stats.mode} · ${stats.backbone_forwards} LLM forwards` : "");
    status("");
  } catch (err) {
    answer.error = vita.error = String(err.message || err);
    turn.className = "turn error";
    body.textContent = answer.error;
    history.pop();
    status("");
  } finally {
    vita.busy = false;
  }
}

init();
