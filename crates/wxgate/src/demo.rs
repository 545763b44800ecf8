//! `wxgate serve --demo`: the embedded gateway plus an in-process WeChat simulator as its
//! upstream, with demo apps registered, so a newcomer can try every endpoint with curl.

use secrecy::{ExposeSecret, SecretString};

use crate::config::{ApiBase, AppConfig, AppKind, Config, TokenApi};
use crate::crypto::random_token;

/// The demo apps, matching the simulator's demo world (`wxsim::demo_apps`).
pub fn demo_apps() -> Vec<AppConfig> {
    let app = |id: &str, kind, appid: &str, secret: &str, agentid| AppConfig {
        id: id.into(),
        kind,
        appid: (kind != AppKind::Wecom).then(|| appid.to_string()),
        corpid: (kind == AppKind::Wecom).then(|| appid.to_string()),
        secret: SecretString::from(secret.to_string()),
        agentid,
        token_api: TokenApi::Stable,
        daily_fetch_budget: None,
    };
    vec![
        app(
            "shop",
            AppKind::OfficialAccount,
            "wxdemo_oa",
            "demo-oa-secret",
            None,
        ),
        app(
            "miniapp",
            AppKind::MiniProgram,
            "wxdemo_mp",
            "demo-mp-secret",
            None,
        ),
        app(
            "ops",
            AppKind::Wecom,
            "wwdemo_corp",
            "demo-wecom-secret",
            Some(1_000_002),
        ),
    ]
}

/// Start the simulator and point `cfg` at it. Returns the simulator (keep it alive) and the
/// admin token to print.
pub async fn prepare(cfg: &mut Config) -> anyhow::Result<(wxsim::SimHandle, String)> {
    let sim = wxsim::start(wxsim::SimConfig::default()).await?;
    let base = ApiBase::try_from(sim.base_url()).map_err(|e| anyhow::anyhow!("{e}"))?;
    cfg.wechat_api_base = base.clone();
    cfg.wecom_api_base = base;
    if cfg.apps.is_empty() {
        cfg.apps = demo_apps();
    }
    let admin = match &cfg.admin_token {
        Some(t) => t.expose_secret().to_string(),
        None => {
            let t = random_token("wxa_");
            cfg.admin_token = Some(SecretString::from(t.clone()));
            t
        }
    };
    Ok((sim, admin))
}

/// What to try, printed once on stdout (not in the logs: it holds the demo admin token).
pub fn banner(gateway: &str, sim: &str, admin: &str) -> String {
    format!(
        "\nwxgate demo: gateway {gateway}, simulated WeChat {sim}\n\
         \n  export WXGATE={gateway} ADMIN={admin}\n\
         \n  # the apps, and a token (fetched once, then served from memory)\
         \n  curl -s -H \"Authorization: Bearer $ADMIN\" $WXGATE/v1/apps\
         \n  curl -s -H \"Authorization: Bearer $ADMIN\" $WXGATE/v1/apps/shop/token\
         \n\n  # an API key for one service, scoped to one app\
         \n  curl -s -H \"Authorization: Bearer $ADMIN\" -H 'content-type: application/json' \\\
         \n       -d '{{\"name\":\"order-service\",\"apps\":[\"shop\"]}}' $WXGATE/v1/keys\
         \n\n  # report a token WeChat rejected (refreshes once, whoever reports it)\
         \n  curl -s -H \"Authorization: Bearer $ADMIN\" -H 'content-type: application/json' \\\
         \n       -d '{{\"access_token\":\"<token>\"}}' $WXGATE/v1/apps/shop/token/invalidate\
         \n\n  # what WeChat saw: fetches, token uses, sends\
         \n  curl -s {sim}/_sim/stats\
         \n  curl -s $WXGATE/metrics | grep wxgate_token\n"
    )
}
