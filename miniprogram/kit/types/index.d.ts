// Types of wxauth-kit (miniprogram_dist/index.js). The problem codes and the server's shapes
// are generated from the server's OpenAPI document (server.d.ts).

import type {
  LoginResult, LoginSession, PhoneBinding, Problem, ProblemCode, Profile,
} from './server';

export type { LoginResult, LoginSession, PhoneBinding, Problem, ProblemCode, Profile };

/** The runtimes the kit has an adapter for. */
export type Platform = 'wx' | 'uni' | 'taro';

/** A WxAuthError's code: the server's, or the kit's own for what never reached it. */
export type WxAuthErrorCode =
  | ProblemCode
  /** no answer: the platform's request failed (`err.detail` is its errMsg, 'request:fail …') */
  | 'network_error'
  /** an answer without a problem+json body (a proxy's error page…) */
  | 'bad_response'
  /** the platform's login (wx.login, uni.login, Taro.login) failed */
  | 'wx_login_failed';

/**
 * What the kit uses of a platform's API object: `wx`, `uni` or `Taro`, as their own typings
 * (miniprogram-api-typings, @dcloudio/types, @tarojs/taro) describe them.
 */
export interface PlatformApi {
  login(options?: any): any;
  request(options: any): any;
  uploadFile(options: any): any;
  checkSession(options?: any): any;
  getStorageSync(key: string): any;
  setStorageSync(key: string, data: any): any;
  removeStorageSync(key: string): any;
  getAppBaseInfo?(): any;
  getSystemInfoSync?(): any;
  getAccountInfoSync?(): any;
}

export interface ClientOptions {
  /** e.g. 'https://api.example.com' (an HTTPS "request legal domain") */
  baseUrl: string;
  /** default: detectPlatform(options) — the object passed in, else the global uni, else wx */
  platform?: Platform;
  /** the wx object (default: the global one) */
  wx?: PlatformApi;
  /** the uni object (default: the global one) */
  uni?: PlatformApi;
  /** Taro (`import Taro from '@tarojs/taro'`): required for 'taro', or use 'wxauth-kit/taro' */
  taro?: PlatformApi;
  /** this mini-program's appid, when the server serves several (default: getAccountInfoSync()) */
  appid?: string;
  /** storage key of the login state (default 'wxauth') */
  storageKey?: string;
  /** Accept-Language to send, e.g. 'zh-CN' (default: the user's WeChat language) */
  language?: string;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD' | 'OPTIONS';

export interface RequestOptions {
  /** a path like '/profile' (after baseUrl) or an absolute URL */
  url: string;
  /** default 'GET' */
  method?: Method | Lowercase<Method>;
  /** the JSON body */
  data?: unknown;
}

/** e.detail of getUserProfile / getUserInfo, old-style encrypted data. */
export interface EncryptedDetail {
  encryptedData?: string;
  iv?: string;
  [key: string]: unknown;
}

/** e.detail of <button open-type="getPhoneNumber">: code (base library ≥ 2.21.2), or old-style encryptedData/iv. */
export interface PhoneDetail extends EncryptedDetail {
  code?: string;
}

export interface LoginOptions {
  /** e.detail.code of the phone button, to bind the number in the login request */
  phoneCode?: string;
}

/** A client for one wxauth server (createClient). Every rejection is a WxAuthError. */
export interface WxAuthClient {
  readonly platform: Platform;
  /**
   * The platform's login → POST /auth/login; concurrent callers share one attempt (a login
   * with phoneCode runs after the one in flight). With phoneCode, `phone` says whether the
   * number was bound (a failing phone code keeps the login).
   * @throws WxAuthError wx_login_failed, network_error, invalid_code, wechat_busy, rate_limited…
   */
  login(options?: LoginOptions): Promise<LoginResult>;
  /**
   * An authenticated request: the body of a 2xx answer (undefined for 204). A 401
   * token_expired / token_invalid / token_revoked / user_not_found renews the login once and
   * retries once; a second 401 rejects. After a 429/503 with Retry-After the endpoint rejects
   * at once (same code, retryAfter the seconds left) until the time has passed.
   */
  request<T = unknown>(options: RequestOptions): Promise<T>;
  /** Revokes this login's tokens on the server and forgets them (also when offline). */
  logout(): Promise<void>;
  /** checkSession, and a new login when it is stale: call before asking for encrypted data. */
  prepareForEncryptedData(): Promise<void>;
  /**
   * Old-style getUserProfile e.detail to POST /profile.
   * @throws WxAuthError decrypt_failed with askAgain = true (ask the user again), watermark_expired…
   */
  updateProfile(detail: EncryptedDetail): Promise<Profile>;
  /**
   * The phone button's e.detail to POST /profile/phone.
   * @throws WxAuthError invalid_code (ask again), decrypt_failed with askAgain = true, wechat_*…
   */
  bindPhone(detail: PhoneDetail): Promise<Profile>;
  /**
   * The chooseAvatar temporary file (e.detail.avatarUrl) as the user's avatar.
   * @throws WxAuthError invalid_image, payload_too_large…
   */
  uploadAvatar(tempFilePath: string): Promise<Profile>;
  /**
   * DELETE /profile with a fresh login code as the confirmation, then forgets the login.
   * @throws WxAuthError confirmation_mismatch, code_used, invalid_code, wx_login_failed…
   */
  deleteAccount(): Promise<void>;
  /** The user's live sessions in this mini-program, newest first; `current` is this device's. */
  sessions(): Promise<LoginSession[]>;
  /**
   * Ends another device's session (this one: logout()).
   * @throws WxAuthError session_not_found (ended already, or not this user's)
   */
  endSession(id: string): Promise<void>;
}

/** Every rejection of the kit. */
export class WxAuthError extends Error {
  constructor(code: WxAuthErrorCode, status: number, detail?: string, body?: Problem | null,
    retryAfter?: number | null);
  readonly name: 'WxAuthError';
  /** the server's problem+json code, or network_error / bad_response / wx_login_failed */
  code: WxAuthErrorCode;
  /** HTTP status; 0 when the request never got an answer */
  status: number;
  /** a human-readable explanation, in the user's language for the server's problems */
  detail: string;
  /** the full problem+json body, when there was one */
  body: Problem | null;
  /** seconds to wait (Retry-After of a 429/503, or what is left of its window); null: not said */
  retryAfter: number | null;
  /** true: ask the user for the data again (new encryptedData) */
  askAgain: boolean;
}

/**
 * Create a client for one wxauth server.
 * @throws Error without baseUrl, with an unknown platform, or when its API object is missing
 */
export function createClient(options: ClientOptions): WxAuthClient;

/** The platform createClient would choose: the object passed in, else the global uni, else wx; null: none. */
export function detectPlatform(options?: Partial<ClientOptions>): Platform | null;

/** The user's WeChat language as a BCP 47 tag (zh_CN → 'zh-CN'); undefined when not said. */
export function userLanguage(api: PlatformApi | { getAppBaseInfo?(): any; getSystemInfoSync?(): any }): string | undefined;
