// The Ephemera web page: talks to API v1 on this origin, keeps the API key and
// the result in this page's memory only (no cookie, no storage, no URL), and
// shows everything as text (Trusted Types forbid HTML sinks anyway). When the
// service publishes a worker key, the photo is encrypted here, end to end
// (docs/e2e.md, hpke.js), and the result is decrypted here.
"use strict";

(function () {
  const API = "/api/v1";
  const POLL_SECONDS = 1;

  /** Everything the page knows, in memory only; gone with the tab. */
  const state = { key: null, tasks: [], e2e: null, reply: null, job: null, resultUrl: null, busy: false };

  const $ = (id) => document.getElementById(id);
  const el = {
    connect: $("connect"), key: $("api-key"), connectButton: $("connect-button"),
    form: $("job"), task: $("task"), taskDescription: $("task-description"),
    params: $("params"), image: $("image"), consent: $("consent"), submit: $("submit"),
    progressSection: $("progress-section"), progress: $("progress"), status: $("status"),
    del: $("delete"), resultSection: $("result-section"), resultTitle: $("result-title"),
    resultImage: $("result-image"), resultJson: $("result-json"), save: $("save"),
    error: $("error"), e2eNotice: $("e2e-notice"),
  };

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function headers(extra) {
    return Object.assign({ Authorization: "Bearer " + state.key }, extra || {});
  }

  async function errorFrom(response) {
    try {
      const body = await response.json();
      return new ApiError(response.status, body.error.code, body.error.message);
    } catch (_) {
      return new ApiError(response.status, "http_error", "HTTP " + response.status);
    }
  }

  async function api(method, path, extraHeaders) {
    const response = await fetch(API + path, {
      method: method,
      headers: headers(extraHeaders),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  function showError(error) {
    const text = error instanceof ApiError ? error.message + " (" + error.code + ")" : String(error.message || error);
    el.error.textContent = text;
  }

  function clearError() {
    el.error.textContent = "";
  }

  function say(text) {
    el.status.textContent = text;
  }

  // --- 1. the key and the catalogue -------------------------------------------

  el.connect.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    state.key = el.key.value.trim();
    if (!state.key) {
      showError(new Error("Type your API key first."));
      el.key.focus();
      return;
    }
    el.connectButton.disabled = true;
    try {
      const body = await (await api("GET", "/tasks")).json();
      state.tasks = body.tasks;
      await loadKeys();
      fillTasks();
      el.form.hidden = false;
      el.task.focus();
    } catch (error) {
      state.key = null;
      showError(error);
      el.key.focus();
    } finally {
      el.connectButton.disabled = false;
    }
  });

  /** The worker key to encrypt to, or null when the service publishes none (then
   * the page sends the photo as it did before end-to-end encryption). */
  async function loadKeys() {
    const body = await (await api("GET", "/keys")).json();
    const active = body.keys.find((key) => key.active);
    state.e2e = active ? {
      service: body.service,
      contentType: body.content_type,
      keyId: active.id,
      publicKey: Uint8Array.from(atob(active.public_key), (c) => c.charCodeAt(0)),
    } : null;
    // The notice tells the truth about this upload, before the consent box.
    el.e2eNotice.hidden = state.e2e === null;
  }

  function fillTasks() {
    el.task.replaceChildren();
    for (const task of state.tasks) {
      // The page sends one photo: a task that compares two (face_verify,
      // which also needs consent) is offered through the API only.
      if (task.inputs && task.inputs.length > 1) continue;
      const option = document.createElement("option");
      option.value = task.name;
      option.textContent = task.name;
      el.task.appendChild(option);
    }
    showTask();
  }

  function currentTask() {
    return state.tasks.find((task) => task.name === el.task.value);
  }

  function showTask() {
    const task = currentTask();
    el.taskDescription.textContent = task ? task.description : "";
    const legend = document.createElement("legend");
    legend.textContent = "Options";
    el.params.replaceChildren(legend);
    const properties = (task && task.params_schema.properties) || {};
    for (const [name, schema] of Object.entries(properties)) {
      el.params.appendChild(paramField(name, schema));
    }
    updateSubmit();
  }

  /** One labelled input for a param of the task's JSON Schema. */
  function paramField(name, schema) {
    const wrapper = document.createElement("div");
    wrapper.className = "param";
    const id = "param-" + name;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = name.replace(/_/g, " ");
    let input;
    if (Array.isArray(schema.enum)) {
      input = document.createElement("select");
      for (const value of schema.enum) {
        const option = document.createElement("option");
        option.value = JSON.stringify(value);
        option.textContent = String(value);
        input.appendChild(option);
      }
      input.value = JSON.stringify(schema.default);
    } else if (schema.type === "integer" || schema.type === "number") {
      input = document.createElement("input");
      input.type = "number";
      if (schema.minimum !== undefined) input.min = String(schema.minimum);
      if (schema.maximum !== undefined) input.max = String(schema.maximum);
      input.step = schema.type === "integer" ? "1" : "any";
      input.value = schema.default === undefined ? "" : String(schema.default);
    } else if (schema.type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = Boolean(schema.default);
    } else {
      // Arrays and anything else: JSON text.
      input = document.createElement("input");
      input.type = "text";
      input.value = schema.default === undefined ? "" : JSON.stringify(schema.default);
    }
    input.id = id;
    input.dataset.param = name;
    input.dataset.kind = schema.type === "boolean" ? "boolean" : (Array.isArray(schema.enum) ? "json" : (schema.type === "integer" || schema.type === "number" ? "number" : "json"));
    input.dataset.default = JSON.stringify(schema.default === undefined ? null : schema.default);
    wrapper.appendChild(label);
    wrapper.appendChild(input);
    if (schema.description) {
      const help = document.createElement("p");
      help.className = "help";
      help.id = id + "-help";
      help.textContent = schema.description;
      input.setAttribute("aria-describedby", help.id);
      wrapper.appendChild(help);
    }
    return wrapper;
  }

  /** The params that differ from their defaults (the service fills in the rest). */
  function readParams() {
    const params = {};
    for (const input of el.params.querySelectorAll("[data-param]")) {
      let value;
      if (input.dataset.kind === "boolean") value = input.checked;
      else if (input.dataset.kind === "number") {
        if (input.value === "") continue;
        value = Number(input.value);
      } else {
        if (input.value === "") continue;
        try {
          value = JSON.parse(input.value);
        } catch (_) {
          throw new Error(input.dataset.param + ": not valid JSON");
        }
      }
      if (JSON.stringify(value) !== input.dataset.default) params[input.dataset.param] = value;
    }
    return params;
  }

  function updateSubmit() {
    el.submit.disabled = state.busy || !state.key || !el.consent.checked || el.image.files.length !== 1;
  }

  el.task.addEventListener("change", showTask);
  el.consent.addEventListener("change", updateSubmit);
  el.image.addEventListener("change", updateSubmit);

  // --- 2. upload, progress, result -----------------------------------------------

  el.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    // Consent gates the upload here too, not only through the disabled button.
    if (!el.consent.checked || el.image.files.length !== 1 || !state.key) {
      updateSubmit();
      return;
    }
    let params;
    try {
      params = readParams();
    } catch (error) {
      showError(error);
      return;
    }
    const refused = await refusal(currentTask(), el.image.files[0]);
    if (refused) {
      showError(refused);
      return;
    }
    await forgetResult();
    state.busy = true;
    updateSubmit();
    el.progressSection.hidden = false;
    el.resultSection.hidden = true;
    try {
      // The key list is read again: a rotation since "Load the tasks" moved the active key.
      await loadKeys();
      const image = state.e2e ? await encrypt(el.task.value, el.image.files[0]) : el.image.files[0];
      const job = await upload(el.task.value, image, params);
      state.job = job;
      el.del.disabled = false;
      const done = await follow(job);
      if (done.status === "succeeded") await showResult(done);
      else if (done.status !== "cancelled") {
        say("The job " + done.status + ".");
        if (done.error) showError(new ApiError(0, done.error.code, done.error.message));
      }
    } catch (error) {
      say("");
      showError(error);
    } finally {
      // The reply key has served its one download, or the job ended without one.
      state.reply = null;
      state.busy = false;
      updateSubmit();
    }
  });

  /** The file's format, from its first bytes, named as the catalogue names formats. */
  async function photoKind(file) {
    const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
    const startsWith = (bytes, at) => bytes.every((byte, i) => head[at + i] === byte);
    if (startsWith([0xff, 0xd8, 0xff], 0)) return "image/jpeg";
    if (startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 0)) return "image/png";
    if (startsWith([0x52, 0x49, 0x46, 0x46], 0) && startsWith([0x57, 0x45, 0x42, 0x50], 8)) return "image/webp";
    return null;
  }

  /** Why the task would refuse this file, said before anything is sent; null if it may go.
   * A photo the service cannot use has no reason to leave this device, and refused
   * uploads in a row block the key, and this network's address, for an hour. */
  async function refusal(task, file) {
    if (file.size > task.max_bytes) {
      const limit = Math.floor(task.max_bytes / (1024 * 1024)) + " MB";
      return new ApiError(0, "payload_too_large", "The photo is larger than " + limit + "; it was not sent.");
    }
    if (!task.accepted_formats.includes(await photoKind(file))) {
      return new ApiError(0, "unsupported_media_type", "This file is not a JPEG, PNG or WebP photo; it was not sent.");
    }
    return null;
  }

  /** The photo as an upload envelope for the active worker key. The one-time reply
   * key's private half cannot leave WebCrypto and stays in memory until the one
   * download opens the result. */
  async function encrypt(task, file) {
    say("Encrypting the photo in this page.");
    const replyKey = await EphemeraHPKE.newReplyKey();
    const envelope = await EphemeraHPKE.sealUpload({
      keyId: state.e2e.keyId,
      publicKey: state.e2e.publicKey,
      service: state.e2e.service,
      task: task,
      role: "image",
      replyKey: replyKey,
      plaintext: new Uint8Array(await file.arrayBuffer()),
    });
    state.reply = { replyKey: replyKey, service: state.e2e.service };
    return new Blob([envelope], { type: state.e2e.contentType });
  }

  /** POST the photo with XMLHttpRequest: fetch cannot report upload progress. */
  function upload(task, file, params) {
    const form = new FormData();
    form.append("task", task);
    form.append("params", JSON.stringify(params));
    // The service reads the type from the bytes; the file name stays here.
    form.append("image", file, "image");
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", API + "/jobs");
      xhr.setRequestHeader("Authorization", "Bearer " + state.key);
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) {
          el.progress.value = Math.round((100 * event.loaded) / event.total);
          say("Uploading: " + el.progress.value + "%");
        }
      });
      xhr.addEventListener("load", () => {
        const body = xhr.response;
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else if (body && body.error) reject(new ApiError(xhr.status, body.error.code, body.error.message));
        else reject(new ApiError(xhr.status, "http_error", "HTTP " + xhr.status));
      });
      xhr.addEventListener("error", () => reject(new Error("The upload failed: network error.")));
      xhr.send(form);
    });
  }

  /** Poll until the job ends, saying queued / running with the time spent. */
  async function follow(job) {
    const started = Date.now();
    el.progress.removeAttribute("value"); // indeterminate while the worker runs
    while (!["succeeded", "failed", "cancelled", "expired"].includes(job.status)) {
      say("Job " + job.status + ": " + Math.round((Date.now() - started) / 1000) + " s");
      if (state.job === null) return { status: "cancelled" };
      const response = await api("GET", "/jobs/" + job.id, { Prefer: "wait=" + POLL_SECONDS });
      job = await response.json();
      // Too busy to hold the poll, the service answered at once: wait as it asks.
      const pollAfter = Number(response.headers.get("Retry-After") || 0);
      if (pollAfter > 0) await new Promise((done) => setTimeout(done, pollAfter * 1000));
    }
    el.progress.value = 100;
    return job;
  }

  async function showResult(job) {
    say("Downloading the result (once).");
    const download = await api("GET", job.result.url.replace(/^\/api\/v1/, ""));
    const blob = job.e2e ? await decrypt(job, download) : await download.blob();
    state.resultUrl = URL.createObjectURL(blob);
    if (job.result.content_type === "application/json") {
      el.resultJson.textContent = JSON.stringify(JSON.parse(await blob.text()), null, 2);
      el.resultJson.hidden = false;
      el.resultImage.hidden = true;
      el.save.download = "ephemera-" + job.task + ".json";
    } else {
      el.resultImage.src = state.resultUrl;
      el.resultImage.alt = "The result of " + job.task + " on your photo";
      el.resultImage.hidden = false;
      el.resultJson.hidden = true;
      el.save.download = "ephemera-" + job.task + extension(job.result.content_type);
    }
    el.save.href = state.resultUrl;
    el.save.hidden = false;
    el.resultSection.hidden = false;
    say("Done: the result was downloaded and deleted from the server." +
      (job.e2e ? " End-to-end encrypted: only the worker saw your photo, and only this page the result." : ""));
    el.resultTitle.focus();
  }

  /** The result envelope, opened with the reply key of the upload. */
  async function decrypt(job, download) {
    const reply = state.reply;
    if (!reply) throw new Error("The result is encrypted to a key this page no longer holds.");
    say("Decrypting the result in this page.");
    const plaintext = await EphemeraHPKE.openResult({
      replyKey: reply.replyKey,
      service: reply.service,
      task: job.task,
      jobId: job.id,
      envelope: new Uint8Array(await download.arrayBuffer()),
    });
    return new Blob([plaintext], { type: job.result.content_type });
  }

  function extension(contentType) {
    return { "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp" }[contentType] || "";
  }

  async function forgetResult() {
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    state.resultUrl = null;
    state.reply = null;
    el.resultImage.removeAttribute("src");
    el.resultImage.hidden = true;
    el.resultJson.textContent = "";
    el.save.removeAttribute("href");
    el.save.hidden = true;
    el.resultSection.hidden = true;
  }

  // --- 3. delete now ------------------------------------------------------------------

  el.del.addEventListener("click", async () => {
    if (!state.job) return;
    clearError();
    const id = state.job.id;
    el.del.disabled = true;
    try {
      await api("DELETE", "/jobs/" + id);
      state.job = null;
      await forgetResult();
      el.progress.value = 0;
      say("Deleted: the server holds nothing of this job any more.");
      el.status.focus();
    } catch (error) {
      el.del.disabled = false;
      showError(error);
    }
  });
})();
