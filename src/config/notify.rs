//! Where notifications go (`notify_*` in helper.cnf, `[default]` only):
//! mail over SMTP, an HTTP webhook, a command. All optional; none set means
//! nothing is sent. Secrets (the SMTP password, the webhook token) are read
//! from files only the user running mha-helper may read, never from this
//! file or from argv.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// The keys of this group, as written in helper.cnf.
pub const KEYS: &[&str] = &[
    "notify_smtp_server",
    "notify_smtp_tls",
    "notify_smtp_user",
    "notify_smtp_password_file",
    "notify_mail_from",
    "notify_mail_to",
    "notify_webhook_url",
    "notify_webhook_format",
    "notify_webhook_token_file",
    "notify_ca_file",
    "notify_command",
    "notify_timeout",
    "notify_retries",
];

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required), port 587 by default.
    Starttls,
    /// TLS from the first byte (SMTPS), port 465 by default.
    Tls,
    /// No TLS at all, port 25 by default: only for a relay on a trusted network.
    None,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The event as JSON (schema in README, "Notifications").
    Json,
    /// `{"text": "..."}`, as Slack-compatible incoming webhooks take.
    Slack,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifySettings {
    /// `host` or `host:port`.
    pub smtp_server: Option<String>,
    pub smtp_tls: SmtpTls,
    pub smtp_user: Option<String>,
    pub smtp_password_file: Option<PathBuf>,
    pub mail_from: Option<String>,
    pub mail_to: Vec<String>,
    pub webhook_url: Option<String>,
    pub webhook_format: WebhookFormat,
    /// Sent as `Authorization: Bearer <token>`.
    pub webhook_token_file: Option<PathBuf>,
    /// PEM certificates to trust instead of the system's (SMTP and webhook).
    pub ca_file: Option<PathBuf>,
    /// Run with `/bin/sh -c`, the event as JSON on its stdin.
    pub command: Option<String>,
    /// Each sink's whole budget, retries included.
    #[serde(serialize_with = "super::value::seconds")]
    pub timeout: Duration,
    /// Further attempts after a failed one, while the budget lasts.
    pub retries: u32,
}

impl Default for NotifySettings {
    fn default() -> NotifySettings {
        NotifySettings {
            smtp_server: None,
            smtp_tls: SmtpTls::Starttls,
            smtp_user: None,
            smtp_password_file: None,
            mail_from: None,
            mail_to: Vec::new(),
            webhook_url: None,
            webhook_format: WebhookFormat::Json,
            webhook_token_file: None,
            ca_file: None,
            command: None,
            timeout: Duration::from_secs(10),
            retries: 2,
        }
    }
}

impl NotifySettings {
    /// Whether any sink is configured.
    pub fn any(&self) -> bool {
        self.smtp_server.is_some() || self.webhook_url.is_some() || self.command.is_some()
    }

    /// Set one key from its (unquoted) text, or say what it accepts.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
        let path = |v: &str| -> Result<Option<PathBuf>, String> {
            match v {
                "" => Ok(None),
                v if v.starts_with('/') => Ok(Some(PathBuf::from(v))),
                _ => Err("expected an absolute path (starting with /), or nothing".into()),
            }
        };
        match key {
            "notify_smtp_server" => {
                if !value.is_empty() {
                    split_server(value, 25)?;
                }
                self.smtp_server = opt(value);
            }
            "notify_smtp_tls" => {
                self.smtp_tls = match value.to_ascii_lowercase().as_str() {
                    "starttls" => SmtpTls::Starttls,
                    "tls" => SmtpTls::Tls,
                    "none" => SmtpTls::None,
                    _ => return Err("expected starttls, tls or none".into()),
                }
            }
            "notify_smtp_user" => self.smtp_user = opt(value),
            "notify_smtp_password_file" => self.smtp_password_file = path(value)?,
            "notify_mail_from" => {
                if !value.is_empty() {
                    mail_address(value)?;
                }
                self.mail_from = opt(value);
            }
            "notify_mail_to" => {
                let to: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(String::from)
                    .collect();
                for a in &to {
                    mail_address(a)?;
                }
                self.mail_to = to;
            }
            "notify_webhook_url" => {
                let ok = value.is_empty()
                    || value.starts_with("https://")
                    || value.starts_with("http://");
                if !ok {
                    return Err("expected an http:// or https:// URL".into());
                }
                self.webhook_url = opt(value);
            }
            "notify_webhook_format" => {
                self.webhook_format = match value.to_ascii_lowercase().as_str() {
                    "json" => WebhookFormat::Json,
                    "slack" => WebhookFormat::Slack,
                    _ => return Err("expected json or slack".into()),
                }
            }
            "notify_webhook_token_file" => self.webhook_token_file = path(value)?,
            "notify_ca_file" => self.ca_file = path(value)?,
            "notify_command" => self.command = opt(value),
            "notify_timeout" => {
                self.timeout = super::value::parse_seconds(value, false)?;
            }
            "notify_retries" => {
                self.retries = value
                    .parse()
                    .ok()
                    .filter(|r| *r <= 10)
                    .ok_or("expected a number of retries from 0 to 10")?
            }
            _ => unreachable!("key checked against KEYS"),
        }
        Ok(())
    }

    /// The keys that only make sense together; `Err((keys involved, what is wrong))`.
    pub fn check(&self) -> Result<(), (&'static [&'static str], String)> {
        const MAIL: &[&str] = &["notify_smtp_server", "notify_mail_from", "notify_mail_to"];
        const AUTH: &[&str] = &["notify_smtp_user", "notify_smtp_password_file"];
        let mail_parts = [
            self.smtp_server.is_some(),
            self.mail_from.is_some(),
            !self.mail_to.is_empty(),
        ];
        if mail_parts.contains(&true) && mail_parts.contains(&false) {
            return Err((
                MAIL,
                "mail needs notify_smtp_server, notify_mail_from and notify_mail_to together"
                    .into(),
            ));
        }
        if self.smtp_user.is_some() != self.smtp_password_file.is_some() {
            return Err((
                AUTH,
                "SMTP authentication needs notify_smtp_user and notify_smtp_password_file together"
                    .into(),
            ));
        }
        if self.smtp_user.is_some() && self.smtp_tls == SmtpTls::None {
            return Err((
                &["notify_smtp_user", "notify_smtp_tls"],
                "refusing to send an SMTP password without TLS (notify_smtp_tls = none)".into(),
            ));
        }
        Ok(())
    }

    /// The SMTP host and port (the default port follows `smtp_tls`).
    pub fn smtp_host_port(&self) -> Option<(String, u16)> {
        let default = match self.smtp_tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        };
        self.smtp_server
            .as_deref()
            .and_then(|s| split_server(s, default).ok())
    }
}

/// `host[:port]` (IPv6 in brackets).
fn split_server(s: &str, default: u16) -> Result<(String, u16), String> {
    let bad = || format!("expected host or host:port, e.g. smtp.example.com:587 (got '{s}')");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (s, None),
        }
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?,
        None => default,
    };
    Ok((host.to_string(), port))
}

fn mail_address(a: &str) -> Result<(), String> {
    a.parse::<lettre::Address>()
        .map(|_| ())
        .map_err(|e| format!("'{a}' is not a mail address ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ports_follow_the_tls_mode_unless_given() {
        let mut n = NotifySettings::default();
        n.set("notify_smtp_server", "smtp.example.com").unwrap();
        assert_eq!(n.smtp_host_port(), Some(("smtp.example.com".into(), 587)));
        n.set("notify_smtp_tls", "tls").unwrap();
        assert_eq!(n.smtp_host_port().unwrap().1, 465);
        n.set("notify_smtp_server", "[2001:db8::1]:2525").unwrap();
        assert_eq!(n.smtp_host_port(), Some(("2001:db8::1".into(), 2525)));
        assert!(n.set("notify_smtp_server", "host:0").is_err());
        assert!(n.set("notify_smtp_server", "a host").is_err());
    }

    #[test]
    fn mail_needs_its_three_keys_and_a_password_needs_tls() {
        let mut n = NotifySettings::default();
        n.set("notify_smtp_server", "127.0.0.1:2525").unwrap();
        let (keys, why) = n.check().unwrap_err();
        assert_eq!(keys[0], "notify_smtp_server");
        assert!(why.contains("together"), "{why}");
        n.set("notify_mail_from", "mha@example.com").unwrap();
        n.set("notify_mail_to", "dba@example.com, oncall@example.com")
            .unwrap();
        assert_eq!(n.mail_to.len(), 2);
        n.check().unwrap();
        n.set("notify_smtp_user", "mha").unwrap();
        assert!(n.check().is_err());
        n.set("notify_smtp_password_file", "/etc/mha-helper/smtp.pw")
            .unwrap();
        n.check().unwrap();
        n.set("notify_smtp_tls", "none").unwrap();
        assert!(n.check().unwrap_err().1.contains("without TLS"));
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        let mut n = NotifySettings::default();
        assert!(n
            .set("notify_mail_to", "dba@example.com, not an address")
            .unwrap_err()
            .contains("'not an address' is not a mail address"));
        assert!(n
            .set("notify_webhook_url", "ftp://x")
            .unwrap_err()
            .contains("http"));
        assert!(n
            .set("notify_smtp_password_file", "pw.txt")
            .unwrap_err()
            .contains("absolute"));
        assert!(n.set("notify_retries", "11").is_err());
        assert!(n.set("notify_timeout", "0").is_err());
        assert!(!n.any());
        n.set("notify_command", "logger -t mha").unwrap();
        assert!(n.any());
    }
}
