//! An HTTP webhook with ureq: a POST of the event as JSON, or of
//! `{"text": ...}` for Slack-compatible receivers. TLS through OpenSSL,
//! the certificate verified (system roots, or `notify_ca_file`); a status
//! other than 2xx is a failure.

use std::time::Duration;

use anyhow::{Context, Result};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use super::{read_secret, Event, Sink};
use crate::config::notify::{NotifySettings, WebhookFormat};

pub struct Webhook {
    url: String,
    format: WebhookFormat,
    token: Option<String>,
    roots: RootCerts,
}

impl Webhook {
    pub fn new(n: &NotifySettings) -> Result<Webhook> {
        let token = n
            .webhook_token_file
            .as_ref()
            .map(|p| read_secret(p, "webhook token"))
            .transpose()?;
        let roots = match &n.ca_file {
            Some(p) => {
                let pem =
                    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .with_context(|| format!("{}: no PEM certificate", p.display()))?;
                RootCerts::from([cert])
            }
            None => RootCerts::PlatformVerifier,
        };
        Ok(Webhook {
            url: n.webhook_url.clone().unwrap_or_default(),
            format: n.webhook_format,
            token,
            roots,
        })
    }

    fn body(&self, event: &Event) -> String {
        match self.format {
            WebhookFormat::Json => serde_json::to_string(event).unwrap_or_default(),
            WebhookFormat::Slack => serde_json::json!({
                "text": format!("*{}*\n{}", event.subject, event.text())
            })
            .to_string(),
        }
    }
}

impl Sink for Webhook {
    fn describe(&self) -> String {
        // The URL without its query (a token may hide there).
        let shown = self.url.split('?').next().unwrap_or("");
        format!("webhook {shown}")
    }

    fn deliver(&self, event: &Event, timeout: Duration) -> Result<()> {
        let tls = TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(self.roots.clone())
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .build()
            .into();
        let mut req = agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        req.send(self.body(event).as_str())?;
        Ok(())
    }
}
