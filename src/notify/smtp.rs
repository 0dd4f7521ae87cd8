//! Mail over SMTP with lettre: STARTTLS (required) or TLS from the start,
//! the server's certificate verified (system roots, or `notify_ca_file`);
//! plain only when `notify_smtp_tls = none`, and then never with a password.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use super::{read_secret, Event, Sink};
use crate::config::notify::{NotifySettings, SmtpTls};

pub struct Mail {
    host: String,
    port: u16,
    tls: SmtpTls,
    ca: Option<Vec<u8>>,
    credentials: Option<Credentials>,
    from: String,
    to: Vec<String>,
}

impl Mail {
    /// Read what it needs (the password file, the CA file) up front.
    pub fn new(n: &NotifySettings) -> Result<Mail> {
        let (host, port) = n
            .smtp_host_port()
            .ok_or_else(|| anyhow!("notify_smtp_server is not set"))?;
        let credentials = match (&n.smtp_user, &n.smtp_password_file) {
            (Some(u), Some(p)) => Some(Credentials::new(
                u.clone(),
                read_secret(p, "SMTP password")?,
            )),
            _ => None,
        };
        let ca = n
            .ca_file
            .as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
            .transpose()?;
        Ok(Mail {
            host,
            port,
            tls: n.smtp_tls,
            ca,
            credentials,
            from: n.mail_from.clone().unwrap_or_default(),
            to: n.mail_to.clone(),
        })
    }

    fn tls(&self) -> Result<Tls> {
        if self.tls == SmtpTls::None {
            return Ok(Tls::None);
        }
        let mut b = TlsParameters::builder(self.host.clone());
        if let Some(pem) = &self.ca {
            b = b.add_root_certificate(Certificate::from_pem(pem).context("notify_ca_file")?);
        }
        let params = b.build_native()?;
        Ok(match self.tls {
            SmtpTls::Starttls => Tls::Required(params),
            _ => Tls::Wrapper(params),
        })
    }

    fn message(&self, event: &Event) -> Result<Message> {
        let mut m = Message::builder()
            .from(self.from.parse()?)
            .subject(event.subject.clone())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            m = m.to(to.parse()?);
        }
        Ok(m.body(event.text())?)
    }
}

impl Sink for Mail {
    fn describe(&self) -> String {
        format!(
            "mail to {} via {}:{}",
            self.to.join(", "),
            self.host,
            self.port
        )
    }

    fn deliver(&self, event: &Event, timeout: Duration) -> Result<()> {
        let mut b = SmtpTransport::builder_dangerous(self.host.clone())
            .port(self.port)
            .tls(self.tls()?)
            .timeout(Some(timeout));
        if let Some(c) = &self.credentials {
            b = b.credentials(c.clone());
        }
        b.build().send(&self.message(event)?)?;
        Ok(())
    }
}
