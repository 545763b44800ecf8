"""wechatpy 1.8.18, unchanged, through wxgate's proxy: the recipe of docs/proxy-sdks.md.

Run by crates/wxgate/tests/api/sdk_clients.rs with the venv's python. Arguments: the proxy URL,
the wxsim URL (to revoke the token mid-run), the gateway URL, the admin token, and the ids and
keys of two wxgate keys (OA app, MP app). Prints one JSON object of what it saw; raises (exit 1)
on anything unexpected.
"""
import io
import json
import sys

import requests
from wechatpy import WeChatClient
from wechatpy.client.api.base import BaseWeChatAPI
from wechatpy.exceptions import WeChatClientException

WECHAT = "https://api.weixin.qq.com"


class WxgateClient(WeChatClient):
    """A WeChatClient whose every call, the token fetch included, goes to wxgate's proxy."""

    def __init__(self, proxy, appid, key, **kwargs):
        self.PROXY = proxy.rstrip("/")
        self.API_BASE_URL = self.PROXY + "/cgi-bin/"
        # wechatpy's own retry on 40001 has no limit; wxgate refreshes and replays itself.
        kwargs.setdefault("auto_retry", False)
        super().__init__(appid, key, **kwargs)
        # The API classes with an absolute base of their own (wxa, datacube, card, ...).
        for name in dir(self):
            api = getattr(self, name, None)
            base = getattr(api, "API_BASE_URL", "")
            if isinstance(api, BaseWeChatAPI) and base.startswith(WECHAT):
                api.API_BASE_URL = self.PROXY + base[len(WECHAT):]

    def fetch_access_token(self):
        return self._fetch_access_token(
            url=self.PROXY + "/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


def main():
    proxy, sim, gateway, admin, oa_key_id, oa_key, mp_key = sys.argv[1:8]
    seen = {}
    oa = WxgateClient(proxy, "wxdemo_oa", oa_key)
    data = {"thing1": {"value": "wechatpy"}, "amount2": {"value": "¥1.00"},
            "time3": {"value": "10:00"}, "character_string4": {"value": "W1"}}
    seen["token_is_placeholder"] = oa.access_token.startswith("wxgp.")
    seen["first_send"] = oa.message.send_template("oWechatpy0001", "TPL_ORDER", data)

    image = bytes((i * 13) % 256 for i in range(200_000))
    up = oa.media.upload("image", ("pic.jpg", io.BytesIO(image), "image/jpeg"))
    down = oa.media.download(up["media_id"])
    seen["download_same_bytes"] = down.content == image
    seen["download_content_type"] = down.headers.get("Content-Type")

    # WeChat revokes the token: wechatpy (auto_retry off) must not notice.
    # The first call after it is a multipart upload: wxgate replays the whole body.
    requests.post(f"{sim}/_sim/apps/wxdemo_oa/revoke", timeout=5).raise_for_status()
    up2 = oa.media.upload("image", ("again.jpg", io.BytesIO(image[:1000]), "image/jpeg"))
    seen["upload_after_revoke"] = "media_id" in up2
    seen["after_revoke"] = [oa.message.send_template("oWechatpy%04d" % i, "TPL_ORDER", data)["errcode"]
                            for i in range(2, 6)]

    mp = WxgateClient(proxy, "wxdemo_mp", mp_key)
    seen["session"] = mp.wxa.code_to_session("wechatpy-code-1")

    # The key is deleted: its placeholder stops working, and no new one is handed out.
    requests.delete(f"{gateway}/v1/keys/{oa_key_id}", headers={"Authorization": "Bearer " + admin},
                    timeout=5).raise_for_status()
    try:
        oa.message.send_template("oWechatpy9999", "TPL_ORDER", data)
        seen["after_key_deleted"] = "sent"
    except WeChatClientException as e:
        seen["after_key_deleted"] = e.errcode
    try:
        WxgateClient(proxy, "wxdemo_oa", oa_key).fetch_access_token()
        seen["token_after_key_deleted"] = "issued"
    except WeChatClientException as e:
        seen["token_after_key_deleted"] = e.errcode
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
