/**
 * WxAuthError and the Retry-After reading shared by the core and the adapters.
 * ES2015 CommonJS, as WeChat's base library runs it without a build step.
 */
'use strict';

class WxAuthError extends Error {
  /**
   * @param {string} code    stable machine code: the server's problem+json `code` (ProblemCode),
   *   or the kit's own 'network_error' / 'bad_response' / 'wx_login_failed'
   * @param {number} status  HTTP status, 0 when the request never got an answer
   * @param {string} detail  human-readable explanation (in the user's language for server problems)
   * @param {object} [body]  the full problem+json body, when there was one
   * @param {number|null} [retryAfter] seconds from the answer's Retry-After header (429 and
   *   503 answers: rate_limited, wechat_busy, wechat_unavailable, database_unavailable…), the
   *   earliest moment worth trying again; null when the server did not say. While that window
   *   is open the kit rejects calls to the same endpoint at once (see core.js), with the
   *   seconds still to wait.
   */
  constructor(code, status, detail, body, retryAfter) {
    super(detail || code);
    this.name = 'WxAuthError';
    this.code = code;
    this.status = status;
    this.detail = detail || code;
    this.body = body || null;
    this.retryAfter = retryAfter == null ? null : retryAfter;
    this.askAgain = false; // true: ask the user for the data again (new encryptedData)
  }
}

/**
 * The Retry-After header of an answer, in whole seconds.
 * @param {object} [header] the answer's headers (any letter case)
 * @returns {number|null} seconds, null when absent or not a number of seconds
 */
function retryAfterOf(header) {
  if (!header || typeof header !== 'object') return null;
  const name = Object.keys(header).find((key) => key.toLowerCase() === 'retry-after');
  const seconds = name === undefined ? NaN : Number(header[name]);
  return Number.isInteger(seconds) && seconds >= 0 ? seconds : null;
}

/** The errMsg of a platform failure ({errMsg: 'request:fail …'}), else `fallback`. */
function errMsgOf(err, fallback) {
  if (err && typeof err.errMsg === 'string' && err.errMsg) return err.errMsg;
  if (err && typeof err.message === 'string' && err.message) return err.message;
  return fallback;
}

module.exports = { WxAuthError, retryAfterOf, errMsgOf };
