// node-webot wechat-api 1.35.1, unchanged, through wxgate's proxy: only `api.endpoint` is set
// (setEndpoint forces https). Run by crates/wxgate/tests/api/sdk_clients.rs with NODE_PATH set
// to the installed package. Arguments: the proxy URL, the wxsim URL, the gateway URL, the admin
// token, the OA key's id and the OA key. Prints one JSON object of what it saw.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { promisify } = require('util');
const API = require('wechat-api');

const [proxy, sim, gateway, admin, keyId, key] = process.argv.slice(2);

function call(api, name, ...args) {
  return new Promise((resolve) => {
    api[name](...args, (err, data, res) => resolve({ err, data, res }));
  });
}

async function post(url, method, headers) {
  const res = await fetch(url, { method, headers });
  if (!res.ok) throw new Error(`${method} ${url}: HTTP ${res.status}`);
}

async function main() {
  const seen = {};
  const api = new API('wxdemo_oa', key);
  api.endpoint = proxy;
  const data = { thing1: { value: 'wechat-api' }, amount2: { value: '¥1.00' },
    time3: { value: '10:00' }, character_string4: { value: 'N1' } };
  const first = await call(api, 'sendTemplate', 'oNode0001', 'TPL_ORDER', '', data);
  if (first.err) throw first.err;
  seen.first_send = first.data;
  seen.token_is_placeholder = api.token.accessToken.startsWith('wxgp.');

  const image = Buffer.alloc(150000);
  for (let i = 0; i < image.length; i++) image[i] = (i * 31) % 256;
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wxgate-node-')), 'pic.jpg');
  fs.writeFileSync(file, image);
  const up = await call(api, 'uploadMedia', file, 'image');
  if (up.err) throw up.err;
  const down = await call(api, 'getMedia', up.data.media_id);
  if (down.err) throw down.err;
  seen.download_same_bytes = Buffer.compare(down.data, image) === 0;
  seen.download_content_type = down.res.headers['content-type'];

  // The first call after it is a multipart upload: wxgate replays the whole body.
  await post(`${sim}/_sim/apps/wxdemo_oa/revoke`, 'POST', {});
  const up2 = await call(api, 'uploadMedia', file, 'image');
  seen.upload_after_revoke = !up2.err && typeof up2.data.media_id === 'string';
  seen.after_revoke = [];
  for (let i = 2; i < 6; i++) {
    const r = await call(api, 'sendTemplate', 'oNode000' + i, 'TPL_ORDER', '', data);
    seen.after_revoke.push(r.err ? r.err.code : r.data.errcode);
  }

  await post(`${gateway}/v1/keys/${keyId}`, 'DELETE', { Authorization: 'Bearer ' + admin });
  const gone = await call(api, 'sendTemplate', 'oNode9999', 'TPL_ORDER', '', data);
  seen.after_key_deleted = gone.err ? gone.err.code : 'sent';
  const fresh = new API('wxdemo_oa', key);
  fresh.endpoint = proxy;
  const token = await new Promise((resolve) => fresh.getAccessToken((err) => resolve(err)));
  seen.token_after_key_deleted = token ? token.code : 'issued';
  console.log(JSON.stringify(seen));
}

main().catch((e) => { console.error(e); process.exit(1); });
