// relumax serve: draw on the pad, post the drawing as PNG to /api/predict while drawing,
// show the probabilities and the 28 x 28 image the network sees; the model's card and its
// class images come from /api/model. Plain JavaScript, no libraries, nothing from elsewhere.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen");
const errorBox = document.getElementById("error");
let drawing = false;
let inked = false;
let last = null;
let inFlight = false;
let pending = null;

function resetPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  showNothing();
}

function position(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: (event.clientX - box.left) * (pad.width / box.width),
    y: (event.clientY - box.top) * (pad.height / box.height),
  };
}

function stroke(from, to) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 20;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
  inked = true;
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = position(event);
  stroke(last, last);
  schedule();
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  event.preventDefault();
  const point = position(event);
  stroke(last, point);
  last = point;
  schedule();
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!drawing) return;
    drawing = false;
    schedule();
  });
}
document.getElementById("clear").addEventListener("click", resetPad);

// At most one prediction in flight; the newest drawing goes next. `busy` is set from the
// stroke until the last prediction is shown (the browser test waits for it to clear).
let encoding = 0;
function schedule() {
  if (!inked) return;
  encoding += 1;
  document.body.dataset.busy = "true";
  pad.toBlob((blob) => {
    encoding -= 1;
    send(blob);
  }, "image/png");
}

function send(blob) {
  if (inFlight) {
    pending = blob;
    return;
  }
  inFlight = true;
  document.body.dataset.busy = "true";
  fetch("/api/predict", { method: "POST", headers: { "Content-Type": "image/png" }, body: blob })
    .then(async (response) => {
      const body = await response.json();
      if (response.ok) show(body);
      else showError(body.error || response.statusText);
    })
    .catch((e) => showError(String(e)))
    .finally(() => {
      inFlight = false;
      if (pending) {
        const next = pending;
        pending = null;
        send(next);
      } else if (encoding === 0) {
        delete document.body.dataset.busy;
      }
    });
}

function showNothing() {
  document.getElementById("predicted").textContent = "?";
  document.getElementById("confidence").textContent = "draw a digit";
  drawBars(new Array(10).fill(0), -1);
  seen.getContext("2d").clearRect(0, 0, 28, 28);
  errorBox.textContent = "";
  delete document.body.dataset.prediction;
}

function showError(message) {
  errorBox.textContent = message;
}

function show(result) {
  errorBox.textContent = "";
  const p = result.probabilities;
  document.getElementById("predicted").textContent = String(result.class);
  document.getElementById("confidence").textContent =
    "p = " + p[result.class].toFixed(3);
  drawBars(p, result.class);
  const image = seen.getContext("2d").createImageData(28, 28);
  result.image.forEach((v, i) => {
    const level = Math.round(255 * v);
    image.data.set([level, level, level, 255], 4 * i);
  });
  seen.getContext("2d").putImageData(image, 0, 0);
  // For scripts driving the page (the browser test reads it).
  document.body.dataset.prediction = String(result.class);
}

function drawBars(probabilities, top) {
  const bars = document.getElementById("bars");
  bars.replaceChildren(
    ...probabilities.map((p, k) => {
      const row = document.createElement("div");
      row.className = k === top ? "bar top" : "bar";
      row.innerHTML =
        '<span class="label"></span><span class="track"><span class="fill"></span></span>' +
        '<span class="value"></span>';
      row.querySelector(".label").textContent = String(k);
      row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
      row.querySelector(".fill").style.display = "block";
      row.querySelector(".value").textContent = p.toFixed(3);
      return row;
    })
  );
}

// The samples: shown on the pad, and sent as they are (as `relumax predict` reads them).
function loadSamples() {
  const strip = document.getElementById("samples");
  for (let d = 0; d < 10; d++) {
    const img = document.createElement("img");
    img.src = "/samples/" + d + ".png";
    img.alt = "sample " + d;
    img.title = "a hand-painted " + d;
    img.addEventListener("click", async () => {
      const blob = await (await fetch(img.src)).blob();
      resetPad();
      const scale = Math.min(pad.width / img.naturalWidth, pad.height / img.naturalHeight);
      const w = img.naturalWidth * scale;
      const h = img.naturalHeight * scale;
      ctx.drawImage(img, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
      send(blob);
    });
    strip.appendChild(img);
  }
}

function loadCard() {
  fetch("/api/model")
    .then((response) => response.json())
    .then((card) => {
      const rows = [
        ["network", card.name],
        ["layers", card.sizes.join(" \u2192 ")],
        ["parameters", card.parameters.toLocaleString("en")],
      ];
      if (card.test_accuracy != null) {
        rows.push(["test accuracy", (100 * card.test_accuracy).toFixed(2) + " %"]);
        rows.push(["test loss", card.test_loss.toFixed(4)]);
      } else {
        rows.push(["test accuracy", "unknown (not a run folder's model)"]);
      }
      if (card.epochs != null) rows.push(["epochs", String(card.epochs)]);
      if (card.config) {
        const c = card.config;
        // f32 values arrive widened to f64 (0.0085 as 0.008500000461935997).
        const short = (v) => String(Number(v.toPrecision(6)));
        rows.push(["training", "lr " + short(c.lr) + ", batch " + c.batch_size + ", dropout " +
          short(c.dropout) + ", momentum " + short(c.momentum) + ", seed " + c.seed]);
      }
      const table = document.getElementById("card");
      for (const [name, value] of rows) {
        const tr = table.insertRow();
        tr.insertCell().textContent = name;
        tr.insertCell().textContent = value;
      }
      const gallery = document.getElementById("gallery");
      for (const method of ["transpose", "pinv"]) {
        const urls = card.class_images[method];
        const label = document.createElement("div");
        label.className = "row-label";
        label.textContent = method === "pinv" ? "pseudo-inverse" : "transpose (the paper's)";
        gallery.appendChild(label);
        urls.forEach((url, k) => {
          const figure = document.createElement("figure");
          const img = document.createElement("img");
          img.src = url;
          img.alt = method + " class " + k;
          const caption = document.createElement("figcaption");
          caption.textContent = String(k);
          figure.append(img, caption);
          gallery.appendChild(figure);
        });
      }
      document.body.dataset.card = "loaded";
    })
    .catch((e) => showError("cannot load the model's card: " + e));
}

resetPad();
loadSamples();
loadCard();
