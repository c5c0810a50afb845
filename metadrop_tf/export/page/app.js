// The page of serve.py: draw new classes, adapt the served model to them in one :predict
// request, show the class probabilities (and, for Meta Dropout, their spread across noise
// samples). Sinusoid models get a plot: click support points, see the adapted curve.
// Everything here is served by the same server; no build step, nothing from elsewhere.
'use strict';

const PAD = 112;        // drawing canvas size in canvas pixels (4x the 28x28 input)
const PEN = 9;          // pen width at PAD scale: about 2.2 pixels at 28x28, as in the shards
const X_RANGE = [-5, 5];  // sinusoid inputs (the task distribution's domain)
const Y_RANGE = [-5.5, 5.5];
const state = {models: [], model: null, points: [], last: null};
const $ = (id) => document.getElementById(id);

// A drawing pad: white strokes on black, like the Omniglot shards (255 - the scanned image).
function makePad(canvas) {
  const ctx = canvas.getContext('2d');
  clearPad(canvas);
  let drawing = false;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width,
            (e.clientY - r.top) * canvas.height / r.height];
  };
  canvas.addEventListener('pointerdown', (e) => {
    drawing = true;
    canvas.setPointerCapture(e.pointerId);
    const [x, y] = at(e);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 0.01, y);
    ctx.stroke();
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    const [x, y] = at(e);
    ctx.lineTo(x, y);
    ctx.stroke();
  });
  const stop = () => { drawing = false; };
  canvas.addEventListener('pointerup', stop);
  canvas.addEventListener('pointercancel', stop);
}

function clearPad(canvas) {
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = '#fff';
  ctx.lineWidth = PEN;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
}

// The model's input [H][W][C] in [0, 1] from a pad: area down-sampling to H x W, gray
// repeated over C channels.
function padToInput(canvas, shape) {
  const [h, w, c] = shape;
  const small = document.createElement('canvas');
  small.width = w;
  small.height = h;
  const ctx = small.getContext('2d');
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(canvas, 0, 0, w, h);
  const pixels = ctx.getImageData(0, 0, w, h).data;
  const image = [];
  for (let i = 0; i < h; i++) {
    const row = [];
    for (let j = 0; j < w; j++) {
      const v = pixels[4 * (i * w + j)] / 255;
      row.push(new Array(c).fill(v));
    }
    image.push(row);
  }
  return image;
}

// Paints pixels [H][W] in [0, 1] onto a pad, each pixel a block (tests and examples use it).
function setPad(canvas, pixels) {
  const ctx = canvas.getContext('2d');
  const h = pixels.length, w = pixels[0].length;
  const bw = canvas.width / w, bh = canvas.height / h;
  clearPad(canvas);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const v = Math.round(255 * pixels[i][j]);
      ctx.fillStyle = `rgb(${v},${v},${v})`;
      ctx.fillRect(j * bw, i * bh, bw, bh);
    }
  }
}

function isBlank(canvas) {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 0; i < data.length; i += 4) if (data[i] > 0) return false;
  return true;
}

function padFigure(id, caption) {
  const fig = document.createElement('figure');
  const canvas = document.createElement('canvas');
  canvas.id = id;
  canvas.className = 'pad';
  canvas.width = canvas.height = PAD;
  makePad(canvas);
  const cap = document.createElement('figcaption');
  cap.textContent = caption + ' ';
  const clear = document.createElement('button');
  clear.type = 'button';
  clear.textContent = 'clear';
  clear.dataset.clear = id;
  cap.appendChild(clear);
  fig.append(canvas, cap);
  return fig;
}

function way() { return state.model.description.way; }

function layoutSupport() {
  const n = Math.max(2, Math.min(way(), Number($('classes').value) || 2));
  const k = Math.max(1, Math.min(5, Number($('shots').value) || 1));
  $('classes').value = n;
  $('shots').value = k;
  const grid = $('support');
  grid.replaceChildren();
  for (let c = 0; c < n; c++) {
    const column = document.createElement('div');
    column.className = 'column';
    for (let s = 0; s < k; s++) {
      column.appendChild(padFigure(`support-${c}-${s}`, k > 1 ? `class ${c + 1} #${s + 1}`
                                                              : `class ${c + 1}`));
    }
    grid.appendChild(column);
  }
  $('bars').replaceChildren();
}

function setStatus(id, text, error) {
  $(id).textContent = text;
  $(id).classList.toggle('error', Boolean(error));
}

async function post(body) {
  const response = await fetch(`/v1/models/${state.model.name}:predict`, {
    method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

// The probabilities of the first n classes, renormalized: the model's belief given that the
// query is one of the classes drawn (the head has `way` outputs, the page may use fewer).
function firstClasses(probabilities, n) {
  const head = probabilities.slice(0, n);
  const total = head.reduce((a, b) => a + b, 0);
  return head.map((p) => p / total);
}

async function classify() {
  const n = Number($('classes').value), k = Number($('shots').value);
  const shape = state.model.description.input_shape;
  const missing = [];
  for (let c = 0; c < n; c++) {
    for (let s = 0; s < k; s++) if (isBlank($(`support-${c}-${s}`))) missing.push(`class ${c + 1}`);
  }
  if (missing.length) {
    return setStatus('status', `draw ${[...new Set(missing)].join(', ')} first`, true);
  }
  if (isBlank($('query'))) return setStatus('status', 'draw the query first', true);
  const supportX = [], labels = [];
  for (let c = 0; c < n; c++) {
    for (let s = 0; s < k; s++) {
      supportX.push(padToInput($(`support-${c}-${s}`), shape));
      labels.push(c);
    }
  }
  const spread = state.model.signatures.includes('spread');
  const body = {signature_name: spread ? 'spread' : 'serving_default',
                inputs: {support_x: supportX, support_labels: labels,
                         query_x: [padToInput($('query'), shape)]}};
  setStatus('status', 'adapting...');
  const started = performance.now();
  try {
    const answer = await post(body);
    const probabilities = firstClasses(answer.outputs.probabilities[0], n);
    const samples = spread ? answer.outputs.sample_probabilities.map(
        (sample) => firstClasses(sample[0], n)) : null;
    state.last = {body, answer, probabilities, samples};
    drawBars(probabilities, samples);
    const best = probabilities.indexOf(Math.max(...probabilities));
    setStatus('status', `class ${best + 1} (${(100 * probabilities[best]).toFixed(1)} %), ` +
              `${Math.round(performance.now() - started)} ms`);
  } catch (e) {
    setStatus('status', e.message, true);
  }
}

function drawBars(probabilities, samples) {
  const bars = $('bars');
  bars.replaceChildren();
  const best = probabilities.indexOf(Math.max(...probabilities));
  probabilities.forEach((p, c) => {
    const row = document.createElement('div');
    row.className = 'bar-row' + (c === best ? ' best' : '');
    row.dataset.probability = p;
    const thumb = document.createElement('canvas');
    thumb.width = thumb.height = 28;
    thumb.getContext('2d').drawImage($(`support-${c}-0`), 0, 0, 28, 28);
    const track = document.createElement('div');
    track.className = 'track';
    const fill = document.createElement('div');
    fill.className = 'fill';
    fill.style.width = `${100 * p}%`;
    track.appendChild(fill);
    let range = '';
    if (samples) {
      const values = samples.map((s) => s[c]);
      const lo = Math.min(...values), hi = Math.max(...values);
      const whisker = document.createElement('div');
      whisker.className = 'whisker';
      whisker.style.left = `${100 * lo}%`;
      whisker.style.width = `${Math.max(0.5, 100 * (hi - lo))}%`;
      whisker.title = `${samples.length} noise samples: ${(100 * lo).toFixed(1)}-` +
                      `${(100 * hi).toFixed(1)} %`;
      track.appendChild(whisker);
      range = whisker.title;
    }
    track.title = range || `${(100 * p).toFixed(1)} %`;
    const value = document.createElement('span');
    value.className = 'value';
    value.textContent = `${(100 * p).toFixed(1)} %`;
    const label = document.createElement('span');
    label.append(thumb, ` ${c + 1}`);
    row.append(label, track, value);
    bars.appendChild(row);
  });
  if (samples) {
    const note = document.createElement('p');
    note.textContent = `Bars: the adapted model's probabilities; black whiskers: their range ` +
        `across ${samples.length} adaptations, each under one draw of Meta Dropout's noise.`;
    bars.appendChild(note);
  }
}

// Sinusoid: plot coordinates <-> canvas pixels.
function toPixel(x, y) {
  const c = $('plot');
  return [(x - X_RANGE[0]) / (X_RANGE[1] - X_RANGE[0]) * c.width,
          (Y_RANGE[1] - y) / (Y_RANGE[1] - Y_RANGE[0]) * c.height];
}

function drawPlot(curve) {
  const c = $('plot'), ctx = c.getContext('2d');
  ctx.clearRect(0, 0, c.width, c.height);
  ctx.strokeStyle = '#ccc';
  ctx.lineWidth = 1;
  const [left, axisY] = toPixel(X_RANGE[0], 0), [right] = toPixel(X_RANGE[1], 0);
  const [axisX, bottom] = toPixel(0, Y_RANGE[0]), [, top] = toPixel(0, Y_RANGE[1]);
  ctx.beginPath();
  ctx.moveTo(left, axisY);
  ctx.lineTo(right, axisY);
  ctx.moveTo(axisX, bottom);
  ctx.lineTo(axisX, top);
  ctx.stroke();
  if (curve) {
    ctx.strokeStyle = '#0a66c2';
    ctx.lineWidth = 2;
    ctx.beginPath();
    curve.x.forEach((x, i) => {
      const [px, py] = toPixel(x, curve.y[i]);
      if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    ctx.stroke();
  }
  ctx.fillStyle = '#b00020';
  for (const [x, y] of state.points) {
    const [px, py] = toPixel(x, y);
    ctx.beginPath();
    ctx.arc(px, py, 4, 0, 2 * Math.PI);
    ctx.fill();
  }
}

async function regress() {
  if (!state.points.length) return setStatus('fit-status', 'click at least one point', true);
  const grid = Array.from({length: 201}, (_, i) => X_RANGE[0] + i * (X_RANGE[1] - X_RANGE[0]) / 200);
  const body = {inputs: {support_x: state.points.map(([x]) => [x]),
                         support_y: state.points.map(([, y]) => [y]),
                         query_x: grid.map((x) => [x])}};
  setStatus('fit-status', 'adapting...');
  try {
    const answer = await post(body);
    const curve = {x: grid, y: answer.outputs.predictions.map((p) => p[0])};
    state.last = {body, answer, curve};
    drawPlot(curve);
    setStatus('fit-status', `adapted to ${state.points.length} points`);
  } catch (e) {
    setStatus('fit-status', e.message, true);
  }
}

function chooseModel(name) {
  state.model = state.models.find((m) => m.name === name);
  const d = state.model.description;
  $('classify').hidden = $('regress').hidden = $('unavailable').hidden = true;
  state.last = null;
  if (!d) {
    $('unavailable-text').textContent = `${name} was exported without a description ` +
        '(assets.extra/metadrop_tf.json); export it again with export.py to use this page. ' +
        'Its REST API works as it is.';
    $('unavailable').hidden = false;
    return;
  }
  $('about').textContent = `${d.dataset}, exported for ${d.way}-way ${d.shot}-shot, version ` +
      `${state.model.version}` + (state.model.signatures.includes('spread') ?
      ', Meta Dropout noise' : '');
  if (d.task === 'regression') {
    state.points = [];
    drawPlot(null);
    $('regress').hidden = false;
  } else {
    $('classes').max = d.way;
    $('classes').value = Math.min(5, d.way);
    layoutSupport();
    clearPad($('query'));
    $('classify').hidden = false;
  }
}

async function start() {
  makePad($('query'));
  $('classes').addEventListener('change', layoutSupport);
  $('shots').addEventListener('change', layoutSupport);
  $('predict').addEventListener('click', classify);
  $('fit').addEventListener('click', regress);
  $('clear-all').addEventListener('click', () => {
    document.querySelectorAll('canvas.pad').forEach(clearPad);
    $('bars').replaceChildren();
  });
  $('clear-points').addEventListener('click', () => { state.points = []; drawPlot(null); });
  document.addEventListener('click', (e) => {
    if (e.target.dataset && e.target.dataset.clear) clearPad($(e.target.dataset.clear));
  });
  $('plot').addEventListener('click', (e) => {
    const c = $('plot'), r = c.getBoundingClientRect();
    const px = (e.clientX - r.left) * c.width / r.width;
    const py = (e.clientY - r.top) * c.height / r.height;
    state.points.push([X_RANGE[0] + px / c.width * (X_RANGE[1] - X_RANGE[0]),
                       Y_RANGE[1] - py / c.height * (Y_RANGE[1] - Y_RANGE[0])]);
    drawPlot(state.last && state.last.curve);
  });
  const answer = await (await fetch('/page/models')).json();
  state.models = answer.models;
  for (const m of state.models) $('model').add(new Option(m.name, m.name));
  $('model').addEventListener('change', (e) => chooseModel(e.target.value));
  chooseModel(state.models[0].name);
  document.body.dataset.ready = 'true';
}

window.metadrop = {padToInput, setPad, isBlank, state};
start();
