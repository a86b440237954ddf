// The console's only way to the server: the /v1 API with the reviewer's bearer token.
// The token lives in this module's memory only (never in storage or a cookie); signing out
// or reloading the page forgets it.

import {reason} from './i18n.js';

let token = null;
let onUnauthenticated = () => {};
let mine = null; // the GET /v1/me promise of the current token

/** The signed-in principal ({id, roles, may: [actions its roles grant]}), fetched once per sign-in. */
export function me() {
  if (mine === null) {
    mine = api('/v1/me').catch((err) => {
      mine = null;
      throw err;
    });
  }
  return mine;
}

export function signedIn() {
  return token !== null;
}

export function signIn(value) {
  token = value;
  mine = null;
}

export function signOut() {
  token = null;
  mine = null;
}

/** Called (once per failing request) when the API answers 401: the token is no longer valid. */
export function whenUnauthenticated(fn) {
  onUnauthenticated = fn;
}

export class ApiError extends Error {
  constructor(status, problem) {
    // The message is the detail in the page's language when it is a known denial reason.
    super(reason(problem?.detail || problem?.title || `HTTP ${status}`));
    this.status = status;
    this.problem = problem;
  }
}

async function fail(response, notify = true) {
  let problem = null;
  try {
    problem = await response.json();
  } catch (e) {
    problem = null;
  }
  if (response.status === 401 && notify) {
    token = null;
    onUnauthenticated();
  }
  return new ApiError(response.status, problem);
}

/** Call the API; JSON in and out unless `raw` (then the Response itself). */
export async function api(path, {method = 'GET', json, accept = 'application/json', raw = false, probe = false} = {}) {
  if (token === null) throw new ApiError(401, null);
  const headers = {Authorization: `Bearer ${token}`, Accept: accept};
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const response = await fetch(path, {method, headers, body, cache: 'no-store', credentials: 'omit', redirect: 'error'});
  // probe: a sign-in check, whose 401 is the form's to report (not an expired session).
  if (!response.ok) throw await fail(response, !probe);
  return raw ? response : response.json();
}

/** The text of an API response (e.g. a tlog-proof, or a report kept byte for byte). */
export async function apiText(path, opts = {}) {
  const response = await api(path, {...opts, raw: true});
  return response.text();
}

/** Content fetched with the token, as a Blob (for <img>/<video> via an object URL). */
export async function apiBlob(path) {
  const response = await api(path, {accept: '*/*', raw: true});
  return response.blob();
}

/**
 * POST a file as the raw request body, reporting upload progress: onProgress(sent, total).
 * Returns {promise, abort}. XMLHttpRequest is used because fetch reports no upload progress.
 */
export function uploadFile(path, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    if (token === null) {
      reject(new ApiError(401, null));
      return;
    }
    xhr.open('POST', path);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.responseType = 'text';
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.addEventListener('load', () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (e) {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body);
        return;
      }
      if (xhr.status === 401) {
        token = null;
        onUnauthenticated();
      }
      reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, {detail: 'network error'})));
    xhr.addEventListener('abort', () => reject(new ApiError(0, {detail: 'aborted', aborted: true})));
    xhr.send(file);
  });
  return {promise, abort: () => xhr.abort()};
}
