// A native mini-program in TypeScript (miniprogram-api-typings): the kit's types against wx's.
import { createClient, WxAuthError } from 'wxauth-kit';
import type { LoginResult, LoginSession, ProblemCode, Profile, WxAuthErrorCode } from 'wxauth-kit';
// the Taro entry's declarations, checked here without skipLibCheck
import type { ClientOptions as TaroEntryOptions } from 'wxauth-kit/taro';
export type TaroOptions = TaroEntryOptions;

const auth = createClient({ baseUrl: 'https://api.example.com' }); // the global wx
const explicit = createClient({ baseUrl: 'https://api.example.com', platform: 'wx', wx });
const platform: 'wx' | 'uni' | 'taro' = explicit.platform;

App({
  onLaunch() {
    auth.login().then((answer: LoginResult) => {
      const isNew: boolean = answer.is_new_user;
      const id: number = answer.user.id;
      console.log(isNew, id, platform);
    }).catch((err: WxAuthError) => console.error(err.code, err.detail));
  },
});

Page({
  data: { nickname: '', error: '', devices: [] as LoginSession[] },
  async onLoad() {
    try {
      const profile = await auth.request<Profile>({ url: '/profile' });
      this.setData({ nickname: profile.nickname ?? '', devices: await auth.sessions() });
    } catch (err) {
      if (!(err instanceof WxAuthError)) throw err;
      const wait: number | null = err.retryAfter;
      this.setData({ error: wait ? `${wait}` : err.detail });
    }
  },
  async onChooseAvatar(e: WechatMiniprogram.CustomEvent<{ avatarUrl: string }>) {
    const profile: Profile = await auth.uploadAvatar(e.detail.avatarUrl);
    this.setData({ nickname: profile.avatar_url ?? '' });
  },
  async onPhone(e: WechatMiniprogram.CustomEvent<{ code?: string; encryptedData?: string; iv?: string }>) {
    const withPhone = await auth.bindPhone(e.detail);
    console.log(withPhone.pure_phone_number);
    const atLogin = await auth.login({ phoneCode: e.detail.code });
    if (atLogin.phone && !atLogin.phone.bound) console.log(atLogin.phone.code);
  },
  async onProfile() {
    await auth.prepareForEncryptedData();
    const { userInfo, encryptedData, iv } = await wx.getUserProfile({ desc: '完善资料' });
    console.log(userInfo.nickName);
    try {
      await auth.updateProfile({ encryptedData, iv });
    } catch (err) {
      if (err instanceof WxAuthError && err.askAgain) wx.showToast({ title: '请再试一次' });
    }
  },
  async onDelete() {
    await auth.endSession('5f0c3b9e2a6d4c1f8e7a9b0c1d2e3f40');
    await auth.deleteAccount();
    await auth.logout();
  },
});

/** Every code has a meaning: a switch over ProblemCode. */
export function isRenewable(code: WxAuthErrorCode): boolean {
  switch (code) {
    case 'token_expired': case 'token_invalid': case 'token_revoked': case 'user_not_found':
      return true;
    case 'network_error': case 'rate_limited':
      return false;
    default:
      return false;
  }
}

// @ts-expect-error not a code the server answers
export const bogus: ProblemCode = 'no_such_code';
// @ts-expect-error baseUrl is required
createClient({ platform: 'wx' });
// @ts-expect-error no such platform
createClient({ baseUrl: 'https://api.example.com', platform: 'alipay' });
// @ts-expect-error a Profile has no session_key
export const leak = (p: Profile) => p.session_key;
