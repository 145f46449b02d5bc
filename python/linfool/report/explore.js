// linfool report, "explore" section (data from linfool/explore.py, embedded in #explore-data).
// Live: P = softmax(s(x) + alpha * W w_t), unclipped; image = clip(x + alpha * w_t) to 0..255.
// At alpha* (fooling.fool's settled alpha) the page shows Caffe's probability for the clipped image.
// URL hash for links and tests: #explore&start=0&target=12&linf=20.5 (or &alpha=settled).
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("explore-data").textContent);
  const K = D.names.length, N = 3 * 64 * 64, PLANE = 64 * 64;

  function bytes(b64) {
    const s = atob(b64), a = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }
  const f32 = (b64) => new Float32Array(bytes(b64).buffer);
  function half(h) {                       // IEEE float16 -> number
    const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return sign * Math.pow(2, -14) * (f / 1024);
    if (e === 31) return f ? NaN : sign * Infinity;
    return sign * Math.pow(2, e - 15) * (1 + f / 1024);
  }
  function f16(b64) {
    const u = new Uint16Array(bytes(b64).buffer), out = new Float32Array(u.length);
    for (let i = 0; i < u.length; i++) out[i] = half(u[i]);
    return out;
  }

  const X = D.x.map(f32), scores = f32(D.scores), alphaStar = f32(D.alpha_star), probStar = f32(D.prob_star);
  const clipAlpha = f32(D.clip_alpha), wAbs = f32(D.w_absmax), wLow = f32(D.w_low), wHigh = f32(D.w_high);
  const chunks = {}, requested = {};
  const state = { start: D.default.start, target: D.default.target, alpha: 0 };

  // --- the page ---
  const app = document.getElementById("explore-app");
  app.innerHTML =
    "<p>Live probabilities are computed here from the scores Caffe gave the start image and W w_t " +
    "(float16: at most " + D.prob_error.toExponential(1) + " off in P(target) at the settled alphas; " +
    "templates as uint8, at most " + D.pixel_error.toFixed(2) + " pixel units off in the image). They ignore " +
    "clipping to 0..255; the bar turns orange where clipping starts. At alpha* (the button) the page shows " +
    "the probability Caffe computed for the clipped image.</p>" +
    "<div class='ex-controls'><label>start <select id='ex-start'></select></label> " +
    "<label>target <input id='ex-target' list='ex-classes' size='34' placeholder='type a class name'></label>" +
    "<datalist id='ex-classes'></datalist> <button id='ex-settle'>alpha*: P = 0.99 in Caffe</button></div>" +
    "<div><label>Linf of alpha * w_t (before clipping) <input id='ex-slider' type='range' min='0' max='255' " +
    "step='0.01' value='0' style='width:420px'></label> <span id='ex-alpha'></span></div>" +
    "<div id='ex-clipbar' class='ex-clipbar'><div id='ex-clipmark'></div></div>" +
    "<div class='ex-row'><figure><canvas id='ex-image' width='64' height='64'></canvas><figcaption>image</figcaption>" +
    "</figure><figure><canvas id='ex-pert' width='64' height='64'></canvas><figcaption id='ex-pert-cap'>" +
    "perturbation</figcaption></figure><div id='ex-bars' class='ex-bars'></div></div>" +
    "<p id='ex-numbers'></p><p id='ex-caffe'></p><p id='ex-status'></p>";
  const style = document.createElement("style");
  style.textContent =
    ".ex-row{display:flex;gap:16px;align-items:flex-start}.ex-row canvas{width:192px;height:192px;" +
    "image-rendering:pixelated;border:1px solid #999}.ex-row figure{margin:0;text-align:center}" +
    ".ex-bars{width:420px;font-size:12px}.ex-bar{height:16px;background:#4a7;margin:2px 0;white-space:nowrap}" +
    ".ex-bar.target{background:#c44}.ex-clipbar{position:relative;width:420px;height:6px;background:#8c8;" +
    "margin:2px 0 8px 0}#ex-clipmark{position:absolute;top:0;bottom:0;right:0;background:#e93}" +
    "#ex-caffe.settled{font-weight:bold;color:#a00}";
  document.head.appendChild(style);
  const $ = (id) => document.getElementById(id);
  D.starts.forEach((label, i) => $("ex-start").add(new Option(label, i)));
  const optionText = (t) => D.names[t] + " (" + D.wnids[t] + ")";
  $("ex-classes").innerHTML = D.names.map((_, t) => "<option value='" + optionText(t).replace(/'/g, "&#39;") + "'>").join("");

  function chunkOf(target) {               // the per-target data, loading its file on first use
    const c = Math.floor(target / D.chunk);
    if (!chunks[c] && !requested[c]) {
      requested[c] = true;
      const s = document.createElement("script");
      s.src = D.files[c];
      s.onerror = () => { $("ex-status").textContent = "ERROR: cannot load " + D.files[c] + " (keep the report's explore/ folder beside it)"; };
      document.head.appendChild(s);
    }
    return chunks[c];
  }
  window.linfoolExplore = {
    chunk(i, templates, gram) { chunks[i] = { t: bytes(templates), g: f16(gram) }; update(); },
  };

  function draw(canvas, pixels, offset, gain) {  // (3, 64, 64) BGR channel-major -> RGBA canvas
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(64, 64);
    for (let p = 0; p < PLANE; p++) {
      for (let c = 0; c < 3; c++) {
        img.data[4 * p + c] = Math.max(0, Math.min(255, offset + gain * pixels[(2 - c) * PLANE + p]));
      }
      img.data[4 * p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }

  function update() {
    const s = state.start, t = state.target, pair = s * K + t;
    $("ex-start").value = String(s);
    $("ex-target").value = optionText(t);
    $("ex-slider").value = String(state.alpha * wAbs[t]);
    const data = chunkOf(t);
    if (!data) {                           // shown again when its file has loaded (linfoolExplore.chunk)
      $("ex-status").textContent = "loading the templates of " + D.names[t] + " ...";
      $("ex-numbers").textContent = $("ex-caffe").textContent = $("ex-bars").textContent = "";
      return;
    }
    const j = t - Math.floor(t / D.chunk) * D.chunk;
    // live scores and softmax (unclipped)
    const z = new Float64Array(K);
    let top = -Infinity;
    for (let k = 0; k < K; k++) { z[k] = scores[s * K + k] + state.alpha * data.g[j * K + k]; top = Math.max(top, z[k]); }
    let sum = 0;
    for (let k = 0; k < K; k++) { z[k] = Math.exp(z[k] - top); sum += z[k]; }
    for (let k = 0; k < K; k++) z[k] /= sum;
    // the image: x + alpha * w_t (w_t decoded from uint8), clipped
    const x = X[s], img = new Float32Array(N), pert = new Float32Array(N), step = (wHigh[t] - wLow[t]) / 255;
    let l2 = 0, linf = 0;
    for (let i = 0; i < N; i++) {
      const w = wLow[t] + data.t[j * N + i] * step;
      img[i] = Math.max(0, Math.min(255, x[i] + state.alpha * w));
      pert[i] = img[i] - x[i];
      l2 += pert[i] * pert[i];
      linf = Math.max(linf, Math.abs(pert[i]));
    }
    draw($("ex-image"), img, 0, 1);
    const gain = linf > 0 ? 127 / linf : 1;
    draw($("ex-pert"), pert, 128, gain);
    $("ex-pert-cap").textContent = "perturbation x" + gain.toFixed(1) + " (grey = 0)";
    const order = Array.from(z.keys()).sort((a, b) => z[b] - z[a]).slice(0, 5);
    if (!order.includes(t)) order[4] = t;
    $("ex-bars").innerHTML = order.map((k) => "<div class='ex-bar" + (k === t ? " target" : "") + "' style='width:" +
      Math.max(1, 100 * z[k]).toFixed(1) + "%'>" + D.names[k] + " " + (100 * z[k]).toFixed(2) + " %</div>").join("");
    const clipped = state.alpha > clipAlpha[pair];
    $("ex-clipmark").style.left = Math.min(100, 100 * clipAlpha[pair] * wAbs[t] / 255) + "%";
    $("ex-alpha").textContent = "alpha = " + state.alpha.toPrecision(6);
    $("ex-numbers").innerHTML = "live P(" + D.names[t] + ") = <span id='ex-live-prob' data-value='" + z[t] + "'>" +
      z[t].toFixed(4) + "</span>; L2 = " + Math.sqrt(l2).toFixed(1) + ", Linf = " + linf.toFixed(1) +
      " (0..255 units, after clipping)" + (clipped ? "; <b>clipping active</b> from alpha = " +
      clipAlpha[pair].toPrecision(5) + ": the live probabilities ignore it" : "");
    // at alpha* to within half a slider step (0.005 in Linf units)
    const settled = Math.abs(state.alpha - alphaStar[pair]) * wAbs[t] <= 0.005;
    $("ex-caffe").className = settled ? "settled" : "";
    $("ex-caffe").innerHTML = "Caffe, clipped image at alpha* = " + alphaStar[pair].toPrecision(6) + ": P(" +
      D.names[t] + ") = <span id='ex-caffe-prob' data-value='" + probStar[pair] + "' data-settled='" + settled +
      "'>" + probStar[pair].toFixed(4) + "</span>" + (settled ? " (the slider is at alpha*)" : "");
    $("ex-status").textContent = "";
  }

  $("ex-start").addEventListener("change", (e) => { state.start = Number(e.target.value); update(); });
  $("ex-target").addEventListener("change", (e) => {
    const t = D.names.findIndex((_, k) => optionText(k) === e.target.value || D.names[k] === e.target.value);
    if (t >= 0) { state.target = t; state.alpha = 0; update(); }
  });
  $("ex-slider").addEventListener("input", (e) => { state.alpha = Number(e.target.value) / wAbs[state.target]; update(); });
  $("ex-settle").addEventListener("click", () => { state.alpha = alphaStar[state.start * K + state.target]; update(); });

  const hash = new URLSearchParams(location.hash.replace(/^#explore&?/, ""));
  if (location.hash.startsWith("#explore")) {
    if (hash.has("start")) state.start = Number(hash.get("start"));
    if (hash.has("target")) state.target = Number(hash.get("target"));
    if (hash.get("alpha") === "settled") state.alpha = alphaStar[state.start * K + state.target];
    else if (hash.has("linf")) state.alpha = Number(hash.get("linf")) / wAbs[state.target];
    $("explore").scrollIntoView();
  }
  update();
})();
