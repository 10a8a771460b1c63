// Taro found through @tarojs/taro: wxauth-kit/taro
import { createClient, WxAuthError } from 'wxauth-kit/taro';
import type { Profile } from 'wxauth-kit/taro';

export const auth = createClient({ baseUrl: 'https://api.example.com' });

export async function nickname(): Promise<string> {
  try {
    return (await auth.request<Profile>({ url: '/profile' })).nickname ?? '';
  } catch (err) {
    return err instanceof WxAuthError ? err.code : '';
  }
}

// @ts-expect-error the platform is Taro's here
createClient({ baseUrl: 'https://api.example.com', platform: 'wx' });
