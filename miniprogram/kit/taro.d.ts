// wxauth-kit/taro: createClient with Taro from '@tarojs/taro' (taro.js).
import type { ClientOptions, WxAuthClient } from './types/index';

export type {
  ClientOptions, LoginResult, LoginSession, Platform, PhoneBinding, Problem, ProblemCode,
  Profile, RequestOptions, WxAuthClient, WxAuthErrorCode,
} from './types/index';
export { WxAuthError, detectPlatform, userLanguage } from './types/index';

/** wxauth-kit's createClient with platform 'taro' and Taro from '@tarojs/taro'. */
export function createClient(options: Omit<ClientOptions, 'platform' | 'wx' | 'uni' | 'taro'>): WxAuthClient;
