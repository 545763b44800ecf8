//! `wxgate serve --demo`: the embedded gateway plus an in-process WeChat simulator as its
//! upstream, with demo apps registered, so a newcomer can try every endpoint with curl.

use secrecy::{ExposeSecret, SecretString};

use crate::config::{ApiBase, AppConfig, AppKind, Config, TokenApi};
use crate::crypto::random_token;

/// The simulator's demo world (`wxsim::demo_apps`) as gateway apps `shop` (OA), `miniapp`
/// (MP) and `ops` (WeCom): the credentials are the simulator's, never typed twice.
pub fn demo_apps() -> Vec<AppConfig> {
    wxsim::demo_apps()
        .into_iter()
        .map(|spec| {
            let (id, kind) = match spec.kind {
                wxsim::AppKind::OfficialAccount => ("shop", AppKind::OfficialAccount),
                wxsim::AppKind::MiniProgram => ("miniapp", AppKind::MiniProgram),
                wxsim::AppKind::Wecom => ("ops", AppKind::Wecom),
            };
            let wecom = kind == AppKind::Wecom;
            AppConfig {
                id: id.into(),
                kind,
                appid: (!wecom).then(|| spec.appid.clone()),
                corpid: wecom.then(|| spec.appid.clone()),
                secret: SecretString::from(spec.secret),
                agentid: spec.agentid,
                token_api: TokenApi::Stable,
                daily_fetch_budget: None,
                proxy_accepts_secret: false,
            }
        })
        .collect()
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
         \n\n  # send a template message (202 once stored), then see it and its attempts\
         \n  curl -s -H \"Authorization: Bearer $ADMIN\" -H 'content-type: application/json' \\\
         \n       -d '{{\"app\":\"shop\",\"type\":\"template\",\"to\":\"oDemoUser1\",\"template_id\":\"TPL_ORDER\",\"data\":{{\"thing1\":\"Blue mug\",\"amount2\":\"¥9.90\",\"time3\":\"15:01\",\"character_string4\":\"A1001\"}}}}' $WXGATE/v1/messages\
         \n  curl -s -H \"Authorization: Bearer $ADMIN\" $WXGATE/v1/messages/<id>\
         \n\n  # what WeChat saw: fetches, token uses, sends\
         \n  curl -s {sim}/_sim/stats\
         \n  curl -s $WXGATE/metrics | grep wxgate_token\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_apps_are_valid_and_named_as_the_readme_says() {
        let apps = demo_apps();
        let ids: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["shop", "miniapp", "ops"]);
        for a in &apps {
            a.validate().unwrap_or_else(|e| panic!("{}: {e}", a.id));
        }
    }
}
