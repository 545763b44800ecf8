#!/usr/bin/env bash
# Installs the stock WeChat SDKs that the proxy tests drive (crates/wxgate/tests/api/sdk_clients.rs)
# into target/sdk: wechatpy in a Python venv, node-webot's wechat-api with npm. Pinned versions,
# from PyPI and the npm registry only; run by .ci/run, and by hand before `cargo test` on a new
# machine. Idempotent: does nothing when the pinned versions are already there.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
SDK=target/sdk
mkdir -p "$SDK"
WECHATPY=1.8.18
if ! "$SDK/venv/bin/python" -c "import wechatpy, sys; sys.exit(wechatpy.__version__ != '$WECHATPY')" 2>/dev/null; then
  python3 -m venv "$SDK/venv"
  # wechatpy needs one of two crypto packages at import time; pycryptodome is the smaller.
  "$SDK/venv/bin/pip" install -q "wechatpy==$WECHATPY" "pycryptodome==3.23.0" "requests==2.34.2"
fi
WECHAT_API=1.35.1
if [ "$(node -p "require('./$SDK/node_modules/wechat-api/package.json').version" 2>/dev/null)" != "$WECHAT_API" ]; then
  (cd "$SDK" && { [ -f package.json ] || npm init -y >/dev/null; } \
    && npm install --no-audit --no-fund --silent "wechat-api@$WECHAT_API")
fi
