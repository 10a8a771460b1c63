/**
 * wxauth-kit for Taro, with Taro found through its own package (`@tarojs/taro`, an optional
 * peer dependency every Taro project has):
 *
 *   import { createClient } from 'wxauth-kit/taro';
 *   export const auth = createClient({ baseUrl: 'https://api.example.com' });
 *
 * Same as require('wxauth-kit').createClient({ platform: 'taro', taro: Taro, … }).
 */
'use strict';

const taroModule = require('@tarojs/taro');
const kit = require('./miniprogram_dist/index.js');

const Taro = taroModule && taroModule.default ? taroModule.default : taroModule;

/**
 * createClient of wxauth-kit with platform 'taro' and Taro from '@tarojs/taro'.
 * @param {object} options as wxauth-kit's createClient (baseUrl, appid, storageKey, language)
 */
function createClient(options) {
  return kit.createClient(Object.assign({ platform: 'taro', taro: Taro }, options));
}

module.exports = {
  createClient,
  WxAuthError: kit.WxAuthError,
  userLanguage: kit.userLanguage,
  detectPlatform: kit.detectPlatform,
};
