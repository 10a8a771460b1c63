// Generated from the wxauth server's OpenAPI document by miniprogram/test/openapi-types.js:
// do not edit (types.test.js fails when this file and the document differ).

/** A problem+json `code` the server answers (README, Errors). */
export type ProblemCode =
  | 'invalid_request'
  | 'unknown_app'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'payload_too_large'
  | 'internal_error'
  | 'database_unavailable'
  | 'store_unavailable'
  | 'service_unavailable'
  | 'invalid_code'
  | 'code_used'
  | 'user_blocked'
  | 'wechat_rate_limited'
  | 'wechat_busy'
  | 'wechat_unavailable'
  | 'wechat_bad_response'
  | 'wechat_timeout'
  | 'wechat_unreachable'
  | 'content_rejected'
  | 'invalid_image'
  | 'decrypt_failed'
  | 'watermark_mismatch'
  | 'watermark_expired'
  | 'signature_mismatch'
  | 'authorization_required'
  | 'token_invalid'
  | 'token_expired'
  | 'user_not_found'
  | 'token_revoked'
  | 'rate_limited'
  | 'metrics_token_required'
  | 'user_disabled'
  | 'session_not_found'
  | 'invalid_client'
  | 'console_sign_in_required'
  | 'csrf_invalid'
  | 'confirmation_mismatch';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** stable machine code (README, Errors) */
  code: ProblemCode;
  /** field → messages (invalid_request) */
  errors?: Record<string, unknown>;
  /** WeChat's errcode, when it gave one */
  errcode?: number;
  /** decrypt_failed: whether WeChat still holds the stored session_key (null: could not ask) */
  session_key_valid?: boolean | null;
}

export interface Profile {
  id: number;
  /** the person across the company's mini-programs (one per unionid) */
  account_id: number;
  /** true while this is the only one of the company's mini-programs the person has used */
  is_new_account?: boolean;
  nickname?: string | null;
  avatar_url?: string | null;
  /** 0 unknown, 1 male, 2 female */
  gender?: number;
  country?: string | null;
  province?: string | null;
  city?: string | null;
  language?: string | null;
  /** with country code unless it is 86 */
  phone_number?: string | null;
  pure_phone_number?: string | null;
  country_code?: string | null;
  /** ISO 8601, UTC */
  created_at?: string;
  /** ISO 8601, UTC */
  updated_at?: string;
}

export interface PhoneBinding {
  bound: boolean;
  /** when not bound: the problem code POST /profile/phone would have answered (invalid_code, watermark_mismatch, wechat_busy, …) */
  code?: string;
  /** when not bound: why, and what to do */
  detail?: string;
  /** WeChat's errcode, when it gave one */
  errcode?: number;
  /** seconds to wait before sending a new phone code (WeChat busy or rate-limited), as Retry-After would say */
  retry_after?: number;
}

export interface LoginResult {
  access_token: string;
  token_type: string;
  /** seconds */
  expires_in: number;
  /** for POST /auth/refresh; single-use, 30 days */
  refresh_token: string;
  /** first login of this user in this mini-program */
  is_new_user: boolean;
  /** first time this person is seen in any of the company's mini-programs */
  is_new_account: boolean;
  user: Profile;
  /** only when `phone_code` was sent: whether the phone number was bound. A failing phone code does not undo the login */
  phone?: PhoneBinding;
}

export interface LoginSession {
  /** the session's id (the tokens' `fam` claim) */
  id: string;
  appid: string;
  /** the login; ISO 8601, UTC */
  created_at: string;
  /** the login or the latest refresh; ISO 8601, UTC */
  last_used_at: string;
  client_address?: string | null;
  /** the client's User-Agent (WeChat's names the device and WeChat version) */
  user_agent?: string | null;
  /** the session of the token this request was sent with */
  current: boolean;
}
