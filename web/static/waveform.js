/* A recording's waveform on a <canvas>, tied to its <audio> element.
 *
 * The WAV bytes are fetched from the same signed URL the player uses. PCM WAV (8/16/24/32-bit
 * integer, 32-bit float) is parsed here directly, which needs no audio output and no resampling;
 * anything else goes through Web Audio's decodeAudioData. Each canvas column shows the min..max of
 * its samples; the part already played is darker, and a click or tap seeks the audio there.
 */
(function () {
  "use strict";

  function parseWav(buffer) {
    var view = new DataView(buffer);
    if (buffer.byteLength < 12 || tag(view, 0) !== "RIFF" || tag(view, 8) !== "WAVE") return null;
    var pos = 12, fmt = null, data = null;
    while (pos + 8 <= buffer.byteLength) {
      var id = tag(view, pos), size = view.getUint32(pos + 4, true), start = pos + 8;
      if (id === "fmt ") {
        fmt = { format: view.getUint16(start, true), channels: view.getUint16(start + 2, true),
          rate: view.getUint32(start + 4, true), bits: view.getUint16(start + 14, true) };
        if (fmt.format === 0xfffe && size >= 26) fmt.format = view.getUint16(start + 24, true);
      } else if (id === "data") {
        // A file still being written may declare more (or 0xFFFFFFFF) bytes than it has.
        data = { start: start, size: Math.min(size, buffer.byteLength - start) };
        break;
      }
      pos = start + size + (size & 1);
    }
    if (!fmt || !data || !fmt.channels || (fmt.format !== 1 && fmt.format !== 3)) return null;
    var width = fmt.bits / 8, frame = width * fmt.channels, frames = Math.floor(data.size / frame);
    var samples = new Float32Array(frames);
    for (var i = 0; i < frames; i++) {
      var at = data.start + i * frame; // first channel is enough for a picture
      samples[i] = sample(view, at, fmt.format, fmt.bits);
    }
    return { samples: samples, rate: fmt.rate, duration: fmt.rate ? frames / fmt.rate : 0 };
  }
  function tag(view, at) {
    return String.fromCharCode(view.getUint8(at), view.getUint8(at + 1), view.getUint8(at + 2), view.getUint8(at + 3));
  }
  function sample(view, at, format, bits) {
    if (format === 3) return bits === 64 ? view.getFloat64(at, true) : view.getFloat32(at, true);
    if (bits === 8) return (view.getUint8(at) - 128) / 128;
    if (bits === 16) return view.getInt16(at, true) / 32768;
    if (bits === 24) {
      var v = view.getUint8(at) | (view.getUint8(at + 1) << 8) | (view.getInt8(at + 2) << 16);
      return v / 8388608;
    }
    return view.getInt32(at, true) / 2147483648;
  }
  function decodeWithWebAudio(buffer) {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return Promise.reject(new Error("This browser cannot decode the recording."));
    var ctx = new Ctx();
    return new Promise(function (resolve, reject) {
      ctx.decodeAudioData(buffer, resolve, reject);
    }).then(function (audio) {
      if (ctx.close) ctx.close();
      return { samples: audio.getChannelData(0), rate: audio.sampleRate, duration: audio.duration };
    }, function () {
      if (ctx.close) ctx.close();
      throw new Error("The recording is not in a format this page can draw; use the download link.");
    });
  }

  /** min/max of each of `columns` slices of the samples, scaled so the loudest peak fills the height. */
  function peaks(samples, columns) {
    var out = new Float32Array(columns * 2), per = samples.length / columns, loudest = 0.0001;
    for (var c = 0; c < columns; c++) {
      var from = Math.floor(c * per), to = Math.max(from + 1, Math.floor((c + 1) * per)), lo = 0, hi = 0;
      for (var i = from; i < to && i < samples.length; i++) {
        var s = samples[i];
        if (s < lo) lo = s;
        if (s > hi) hi = s;
      }
      out[2 * c] = lo; out[2 * c + 1] = hi;
      loudest = Math.max(loudest, -lo, hi);
    }
    for (var j = 0; j < out.length; j++) out[j] /= loudest;
    return out;
  }

  function draw(canvas, levels, progress) {
    var ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height, mid = h / 2;
    var played = Math.round(progress * w);
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#e2e8f0";
    ctx.fillRect(0, mid, w, 1);
    for (var x = 0; x < w; x++) {
      var lo = levels[2 * x], hi = levels[2 * x + 1];
      var top = mid - hi * (mid - 2), bottom = mid - lo * (mid - 2);
      ctx.fillStyle = x < played ? "#1d4ed8" : "#93a9d9";
      ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
    }
    if (progress > 0) {
      ctx.fillStyle = "#b42318";
      ctx.fillRect(Math.min(w - 2, played), 0, 2, h);
    }
  }

  function fitCanvas(canvas) {
    var ratio = window.devicePixelRatio || 1, width = Math.round((canvas.clientWidth || 800) * ratio);
    if (width > 0 && canvas.width !== width) canvas.width = width;
    canvas.height = Math.round((canvas.clientHeight || 140) * ratio);
  }

  /** Fetch `url`, draw its waveform on `canvas`, follow `audio`; resolves with {duration}. */
  function attach(canvas, audio, url) {
    return fetch(url, { credentials: "omit", cache: "force-cache" }).then(function (response) {
      if (!response.ok) throw new Error("The recording could not be loaded (" + response.status + ").");
      return response.arrayBuffer();
    }).then(function (buffer) {
      var parsed = parseWav(buffer);
      return parsed || decodeWithWebAudio(buffer);
    }).then(function (wave) {
      var levels = null, duration = wave.duration;
      function progress() {
        var total = isFinite(audio.duration) && audio.duration > 0 ? audio.duration : duration;
        return total ? Math.min(1, audio.currentTime / total) : 0;
      }
      function redraw() {
        fitCanvas(canvas);
        levels = peaks(wave.samples, canvas.width);
        draw(canvas, levels, progress());
      }
      redraw();
      canvas.dataset.drawn = "true";
      canvas.dataset.samples = String(wave.samples.length);
      ["timeupdate", "seeked", "play", "pause", "ended"].forEach(function (ev) {
        audio.addEventListener(ev, function () { draw(canvas, levels, progress()); });
      });
      window.addEventListener("resize", redraw);
      canvas.addEventListener("click", function (ev) {
        var rect = canvas.getBoundingClientRect();
        var total = isFinite(audio.duration) && audio.duration > 0 ? audio.duration : duration;
        if (!total || !rect.width) return;
        audio.currentTime = Math.max(0, Math.min(1, (ev.clientX - rect.left) / rect.width)) * total;
      });
      return { duration: duration };
    });
  }

  window.CalltrackingWaveform = { attach: attach, parseWav: parseWav };
})();
