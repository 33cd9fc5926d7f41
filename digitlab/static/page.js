// The draw-a-digit page: strokes on a canvas, sent as PNG to /v1/predict while drawing.
"use strict";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const seen = document.getElementById("seen").getContext("2d");
const digitText = document.getElementById("digit");
const detailText = document.getElementById("detail");
const fileInput = document.getElementById("file");
const answerRegion = document.querySelector(".answer");
const bars = [];
// A brush about a tenth of the canvas, like MNIST's strokes relative to its 20-pixel digits.
const BRUSH = 22;
// Predict at most every 120 ms while drawing: fast enough to follow the pen, light on the server.
const DEBOUNCE_MS = 120;
let drawing = false, hasInk = false, last = null, timer = null, sent = 0, shown = 0, pending = 0;

function blankPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  ink.strokeStyle = ink.fillStyle = "#000";
  ink.lineWidth = BRUSH;
  ink.lineCap = ink.lineJoin = "round";
}

function buildBars() {
  const list = document.getElementById("bars");
  for (let d = 0; d < 10; d++) {
    const item = document.createElement("li");
    item.innerHTML = `<span>${d}</span><span class="track"><span class="fill"></span></span><span class="value">0%</span>`;
    item.setAttribute("aria-label", `${d}: 0%`);
    list.appendChild(item);
    bars.push(item);
  }
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = point(event);
  ink.beginPath();
  ink.arc(last[0], last[1], BRUSH / 2, 0, 2 * Math.PI);
  ink.fill();
  hasInk = true;
  schedule();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const here = point(event);
  ink.beginPath();
  ink.moveTo(last[0], last[1]);
  ink.lineTo(here[0], here[1]);
  ink.stroke();
  last = here;
  schedule();
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    clearTimeout(timer);
    timer = null;
    predictCanvas();
  });
}

function schedule() {
  if (timer === null) timer = setTimeout(() => { timer = null; predictCanvas(); }, DEBOUNCE_MS);
}

function predictCanvas() {
  if (!hasInk) return;
  markBusy(+1); // busy from now: encoding the PNG takes a moment too
  pad.toBlob((blob) => { predict(blob, "drawing.png"); markBusy(-1); }, "image/png");
}

// aria-busy tells screen readers (and the browser test) that a newer answer is on its way.
function markBusy(change) {
  pending += change;
  answerRegion.setAttribute("aria-busy", String(pending > 0));
}

async function predict(blob, name) {
  const request = ++sent;
  const form = new FormData();
  form.append("image", blob, name);
  markBusy(+1);
  let body;
  try {
    const response = await fetch("/v1/predict?include=prepared", { method: "POST", body: form });
    body = await response.json();
    if (!response.ok) throw new Error(body.detail || response.statusText);
  } catch (error) {
    if (request > shown) { shown = request; showError(String(error.message || error)); }
    return;
  } finally {
    markBusy(-1);
  }
  if (request < shown) return; // an older answer arriving after a newer one
  shown = request;
  show(body.results[0]);
}

function show(answer) {
  if (answer.error) return showError(answer.error);
  if (answer.digit === null || answer.digit === undefined) {
    digitText.textContent = "–";
    detailText.textContent = "not a digit" + (answer.reason ? `: ${answer.reason}` : "");
  } else {
    digitText.textContent = answer.label ?? String(answer.digit);
    detailText.textContent = `${(answer.confidence * 100).toFixed(1)}% sure; next ${answer.runner_up}`;
  }
  digitText.setAttribute("aria-label", `Digit read: ${digitText.textContent}`);
  const probabilities = answer.probabilities || [];
  bars.forEach((item, d) => {
    const p = probabilities[d] ?? 0;
    item.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
    item.querySelector(".value").textContent = `${(p * 100).toFixed(1)}%`;
    item.setAttribute("aria-label", `${d}: ${(p * 100).toFixed(1)}%`);
    item.classList.toggle("best", d === answer.digit);
  });
  if (answer.prepared) drawSeen(answer.prepared);
}

function drawSeen(rows) {
  const image = seen.createImageData(28, 28);
  rows.flat().forEach((v, i) => { image.data.set([v, v, v, 255], i * 4); });
  seen.putImageData(image, 0, 0);
}

function showError(message) {
  digitText.textContent = "!";
  detailText.textContent = message;
}

function clearAll() {
  blankPad();
  hasInk = false;
  sent++; // answers still on their way belong to the old drawing
  shown = sent;
  digitText.textContent = "?";
  digitText.setAttribute("aria-label", "Digit read: none yet");
  detailText.textContent = "Draw a digit to start.";
  seen.clearRect(0, 0, 28, 28);
  bars.forEach((item, d) => {
    item.querySelector(".fill").style.width = "0";
    item.querySelector(".value").textContent = "0%";
    item.setAttribute("aria-label", `${d}: 0%`);
    item.classList.remove("best");
  });
}

// An image from a file, the clipboard or a drop: shown on the pad, and its own bytes sent to the model.
function useImage(file) {
  if (!file || !file.type.startsWith("image/")) return showError("that is not an image file");
  const url = URL.createObjectURL(file);
  const picture = new Image();
  picture.onload = () => {
    blankPad();
    const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
    const w = picture.width * scale, h = picture.height * scale;
    ink.drawImage(picture, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
    hasInk = true;
  };
  picture.onerror = () => URL.revokeObjectURL(url);
  picture.src = url;
  predict(file, file.name || "upload");
}

document.getElementById("clear").addEventListener("click", clearAll);
document.getElementById("upload").addEventListener("click", () => fileInput.click());
fileInput.addEventListener("change", () => { useImage(fileInput.files[0]); fileInput.value = ""; });
document.addEventListener("paste", (event) => {
  const file = [...(event.clipboardData?.files || [])][0];
  if (file) { event.preventDefault(); useImage(file); }
});
pad.addEventListener("dragover", (event) => { event.preventDefault(); pad.classList.add("dropping"); });
pad.addEventListener("dragleave", () => pad.classList.remove("dropping"));
pad.addEventListener("drop", (event) => {
  event.preventDefault();
  pad.classList.remove("dropping");
  useImage(event.dataTransfer.files[0]);
});

buildBars();
clearAll();
