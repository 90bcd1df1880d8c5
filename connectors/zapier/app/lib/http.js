'use strict';
// Shared request plumbing: the hub URL from the connection, the API key on every request,
// and the hub's JSON errors ({"error": {"code", "message"}}) turned into readable Zap errors.

const hubUrl = (bundle) => String(bundle.authData.hub_url || '').trim().replace(/\/+$/, '');

const api = (bundle, path) => `${hubUrl(bundle)}/api/v1${path}`;

const addApiKey = (request, z, bundle) => {
  if (bundle.authData && bundle.authData.api_key) {
    request.headers = request.headers || {};
    request.headers.Authorization = `Bearer ${bundle.authData.api_key}`;
  }
  return request;
};

const errorMessage = (response) => {
  let body = null;
  try {
    body = typeof response.data === 'object' ? response.data : JSON.parse(response.content);
  } catch (e) {
    body = null;
  }
  const error = body && body.error;
  if (!error) return { code: `http_${response.status}`, message: `The hub answered HTTP ${response.status}` };
  const fields = error.details && error.details.fields ? ` ${JSON.stringify(error.details.fields)}` : '';
  return { code: error.code || `http_${response.status}`, message: `${error.message}${fields}` };
};

const handleHubErrors = (response, z) => {
  if (response.status < 400 || response.skipThrowForStatus || (response.request && response.request.skipThrowForStatus)) {
    return response;
  }
  const { code, message } = errorMessage(response);
  if (response.status === 401 || response.status === 403) {
    throw new z.errors.Error(`The hub refused the API key: ${message}`, 'AuthenticationError', response.status);
  }
  throw new z.errors.Error(message, code, response.status);
};

module.exports = { hubUrl, api, addApiKey, handleHubErrors, errorMessage };
