// Thin client for the JSON API: same-origin cookie session, errors as ApiError with the
// server's sentence, and one place that handles an expired login (re-login in place).
// Usage: import { api, ApiError, setReauthHandler } from "/static/lib/api.js";
//   const me = await api("/api/auth/me");
//   await api(`/api/datasets/${id}`, { method: "PATCH", body: { instructions } });

/** An HTTP error (status >= 400) or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body;
  }
  get isNetwork() { return this.status === 0; }
  get isUnauthorized() { return this.status === 401; }
}

const GENERIC = {
  400: "The request was not accepted.",
  401: "Your session has expired. Please sign in again.",
  403: "You do not have permission to do this.",
  404: "Not found.",
  413: "The upload is too large.",
  422: "The data sent was not valid.",
  500: "The server hit an error. Please try again.",
};

/** Turn a response body into one readable sentence. */
export function errorSentence(status, body) {
  const detail = body && body.detail;
  if (typeof detail === "string" && detail) return detail;
  // FastAPI validation errors: [{loc, msg}, ...]
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => (d && d.msg ? d.msg : String(d))).join("; ");
  }
  return GENERIC[status] || (status >= 500 ? GENERIC[500] : `Request failed (${status}).`);
}

let reauthHandler = null;
let reauthPending = null;

/** Register fn() -> Promise that resolves once the user has signed in again. */
export function setReauthHandler(fn) { reauthHandler = fn; }

/** Ask the user to sign in again; concurrent callers share one dialog. */
export function requestReauth() {
  if (!reauthHandler) return Promise.reject(new ApiError(401, GENERIC[401]));
  if (!reauthPending) {
    reauthPending = Promise.resolve(reauthHandler()).finally(() => { reauthPending = null; });
  }
  return reauthPending;
}

/**
 * Call the API. body objects are sent as JSON; FormData as multipart.
 * On 401 (unless opts.reauth === false) the re-login dialog is shown and the call retried once.
 * Returns the parsed JSON, or null for 204.
 */
export async function api(url, opts = {}) {
  const { method = "GET", body, reauth = true, signal } = opts;
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" }, signal };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "The server could not be reached. Check your connection.");
  }
  if (res.status === 401 && reauth && reauthHandler) {
    await requestReauth();
    return api(url, { ...opts, reauth: false });
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) throw new ApiError(res.status, errorSentence(res.status, data), data);
  return data;
}

/**
 * Upload a FormData with XMLHttpRequest so that upload progress can be shown.
 * onProgress(fraction 0..1) during the upload, then onUploaded() while the server processes.
 */
export function uploadWithProgress(url, formData, { onProgress, onUploaded } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.withCredentials = true;
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total); };
    xhr.upload.onload = () => { if (onProgress) onProgress(1); if (onUploaded) onUploaded(); };
    xhr.onerror = () => reject(new ApiError(0, "The upload failed: the server could not be reached."));
    xhr.onload = () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, errorSentence(xhr.status, data), data));
    };
    xhr.send(formData);
  });
}
