//! Notifications in the lab: a real SMTP server (aiosmtpd) and an HTTP
//! receiver run in the manager's namespace (tests/support/receivers.py);
//! MHA calls `mha-helper report` as its report_script after a dead-master
//! failover; a failing online switch alerts by itself.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SMTP_PORT: u16 = 2525;
const HTTP_PORT: u16 = 8080;

/// The receivers, running until dropped.
struct Receivers {
    child: Child,
    dir: PathBuf,
    ip: String,
}

impl Receivers {
    fn start(lab: &Lab) -> Receivers {
        Receivers::start_with(lab, &[])
    }

    /// With `extra`: TLS_PORT CERT KEY USER PASSWORD_FILE (see receivers.py).
    fn start_with(lab: &Lab, extra: &[String]) -> Receivers {
        use std::os::unix::process::CommandExt;
        let dir = lab.dir().join("manager/received");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ip = lab.var("MHALAB_IP_mgr");
        let script = repo().join("tests/support/receivers.py");
        let mut child = Command::new(lab_script())
            .arg("exec")
            .arg("mgr")
            .arg("/usr/bin/python3")
            .arg(&script)
            .arg(&dir)
            .arg(&ip)
            .arg(SMTP_PORT.to_string())
            .arg(HTTP_PORT.to_string())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Its own log (a refused TLS handshake is a traceback there).
            .stderr(std::fs::File::create(lab.dir().join("manager/receivers.log")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the receivers did not start");
        Receivers { child, dir, ip }
    }

    /// Every record of `kind` (`mail`, `http`) received so far, in order.
    fn got(&self, kind: &str) -> Vec<serde_json::Value> {
        let mut files: Vec<(u32, PathBuf)> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?.to_string();
                let n = name
                    .strip_prefix(&format!("{kind}-"))?
                    .strip_suffix(".json")?;
                Some((n.parse().ok()?, p))
            })
            .collect();
        files.sort();
        files
            .iter()
            .map(|(_, p)| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    fn smtp(&self) -> String {
        format!("{}:{SMTP_PORT}", self.ip)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}:{HTTP_PORT}{path}", self.ip)
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        // SAFETY: the process group we made for the receivers.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Mail and a webhook to the receivers, plus `extra` settings.
fn notify_conf(r: &Receivers, webhook: &str, extra: &str) -> String {
    format!(
        "[default]\nnotify_smtp_server = {}\nnotify_smtp_tls = none\n\
         notify_mail_from = mha@lab.example\nnotify_mail_to = dba@lab.example, oncall@lab.example\n\
         notify_webhook_url = {}\n{extra}",
        r.smtp(),
        r.url(webhook)
    )
}

/// The lab's MHA config with `report_script` set to mha-helper.
fn conf_with_report_script(lab: &Lab) -> String {
    let line = format!(
        "report_script={} report --conf={{conf}} --helper-conf={}",
        bin(),
        lab.helper_cnf()
    );
    lab.app_cnf_with("notify", &line)
}

/// A mail header, its folded lines joined.
fn header(mail: &serde_json::Value, name: &str) -> String {
    let data = mail["data"].as_str().unwrap();
    let head = data.split("\r\n\r\n").next().unwrap().replace("\r\n", "\n");
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    unfolded
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(String::from)
        .unwrap_or_else(|| panic!("no {name} header in\n{data}"))
}

#[test]
fn a_dead_master_failover_through_mha_mails_and_posts_its_report_with_the_new_master_and_figures() {
    let lab = Lab::lock();
    let r = Receivers::start(&lab);
    lab.set_helper_conf(&notify_conf(&r, "/ok", ""));
    let conf = conf_with_report_script(&lab);
    common::lab(&["kill-mysql", "db1"]);
    let o = lab.failover_with_conf(&conf, "db1", &["--new-master", "db2"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));

    // MHA runs report_script before masterha_master_switch ends.
    let mails = r.got("mail");
    assert_eq!(mails.len(), 1, "one mail: {mails:?}\n{}", lab.manager_log());
    let mail = &mails[0];
    assert_eq!(
        mail["to"],
        serde_json::json!(["dba@lab.example", "oncall@lab.example"])
    );
    let subject = header(mail, "Subject");
    assert!(
        subject.contains("Master failover db1") && subject.contains("succeeded"),
        "{subject}"
    );
    let body = mail["data"].as_str().unwrap();
    assert!(
        body.contains("Master failover to db2"),
        "MHA's body: {body}"
    );
    assert!(body.contains("-- mha-helper --"), "{body}");
    assert!(body.contains("new master           db2"), "{body}");
    assert!(body.contains("switch               failover "), "{body}");
    assert!(body.contains("new-master-writable@db2"), "{body}");

    let posts = r.got("http");
    assert_eq!(posts.len(), 1, "one POST: {posts:?}");
    let event: serde_json::Value =
        serde_json::from_str(posts[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(event["schema"], "mha-helper.event/1");
    assert_eq!(event["kind"], "report");
    assert_eq!(event["app"], "app1");
    assert_eq!(event["orig_master"], "db1");
    assert_eq!(event["new_master"], "db2");
    assert_eq!(event["new_replicas"], serde_json::json!(["db3"]));
    assert!(event["subject"].as_str().unwrap().contains("succeeded"));
    assert_eq!(event["switch"]["kind"], "failover");
    assert_eq!(event["switch"]["outcome"], "completed");
    assert_eq!(event["switch"]["new_master"], "db2");
    assert_eq!(posts[0]["headers"]["content-type"], "application/json");
}

#[test]
fn a_hanging_or_down_webhook_costs_at_most_its_timeout_and_the_mail_still_goes() {
    let lab = Lab::lock();
    let r = Receivers::start(&lab);
    let conf = conf_with_report_script(&lab);
    let helper = lab.helper_cnf();
    let report = |lab: &Lab| {
        let t = Instant::now();
        let o = lab.helper(&[
            "report",
            &format!("--conf={conf}"),
            &format!("--helper-conf={helper}"),
            "--orig_master_host=db1",
            "--new_master_host=db2",
            "--new_slave_hosts=db3",
            "--subject=mha: MySQL Master failover db1 to db2 succeeded",
            "--body=Master db1 is down!",
        ]);
        (o, t.elapsed())
    };

    // A webhook that never answers: the whole budget (2 s), once.
    lab.set_helper_conf(&notify_conf(&r, "/hang", "notify_timeout = 2\n"));
    let (o, took) = report(&lab);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    assert!(
        stderr(&o).contains("notification failed: webhook "),
        "{}",
        both(&o)
    );
    assert!(
        stderr(&o).contains("notified: mail to dba@lab.example"),
        "{}",
        both(&o)
    );
    assert_eq!(r.got("mail").len(), 1);

    // A webhook nobody listens on: retried with pauses, within the budget.
    let down = format!("http://{}:{}/ok", r.ip, HTTP_PORT + 1);
    lab.set_helper_conf(
        &notify_conf(&r, "/ok", "notify_timeout = 3\nnotify_retries = 2\n")
            .replace(&r.url("/ok"), &down),
    );
    let (o, took) = report(&lab);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(took < Duration::from_millis(4500), "took {took:?}");
    assert!(stderr(&o).contains("attempt 1 failed"), "{}", both(&o));
    assert!(stderr(&o).contains("after 3 attempt(s)"), "{}", both(&o));
    assert_eq!(
        r.got("mail").len(),
        2,
        "the mail goes out whatever the webhook does"
    );

    // Through MHA: the failover ends although the webhook hangs.
    lab.set_helper_conf(&notify_conf(&r, "/hang", "notify_timeout = 2\n"));
    common::lab(&["kill-mysql", "db1"]);
    let o = lab.failover_with_conf(&conf, "db1", &["--new-master", "db2"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(r.got("mail").len(), 3);
    let log = lab.manager_log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("notification failed: webhook "))
        .unwrap_or_else(|| panic!("the report's log is not in the manager log:\n{log}"));
    let ms: u64 = line
        .rsplit_once(", ")
        .and_then(|(_, t)| t.strip_suffix(" ms)"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(ms <= 2500, "the hanging webhook held MHA {ms} ms: {line}");
}

#[test]
fn an_online_switch_that_fails_in_stop_alerts_with_the_failed_step_and_host() {
    let lab = Lab::lock();
    let r = Receivers::start(&lab);
    lab.set_helper_conf(&format!(
        "[default]\nnotify_webhook_url = {}\n",
        r.url("/ok")
    ));
    let before = lab.state();
    let o = lab.switchover(
        "db2",
        &[("MHA_HELPER_FAULT", "stop/fail@after:old-master-read-only")],
    );
    assert_ne!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(
        lab.settled_state(),
        before,
        "the rollback must restore everything"
    );

    let posts = r.got("http");
    assert_eq!(posts.len(), 1, "one alert: {posts:?}\n{}", both(&o));
    let e: serde_json::Value = serde_json::from_str(posts[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(e["kind"], "alert");
    assert_eq!(e["failure"]["command"], "master-ip-online-change");
    assert_eq!(e["failure"]["phase"], "stop");
    assert_eq!(e["failure"]["exit_code"], 1);
    let error = e["failure"]["error"].as_str().unwrap();
    assert!(
        error.contains("old-master-read-only") && error.contains("db1"),
        "the alert names the step and the host: {error}"
    );
    assert_eq!(e["orig_master"], "db1");
    assert_eq!(e["new_master"], "db2");
    let next = e["next"].to_string();
    assert!(next.contains("rolled back"), "{next}");
}

#[test]
fn the_webhook_token_reaches_the_receiver_and_no_argv_or_log() {
    let lab = Lab::lock();
    let r = Receivers::start(&lab);
    let token = "tok-9f2c1e77-lab-secret";
    let file = lab.dir().join("manager/webhook.token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    // Readable by others: refused, and the secret is not in the refusal.
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    lab.set_helper_conf(&format!(
        // The command sink keeps each run (and a child of it) alive for the
        // watch to sample.
        "[default]\nnotify_webhook_url = {}\nnotify_webhook_token_file = {}\n\
         notify_command = sleep 0.5\n",
        r.url("/ok"),
        file.display()
    ));
    let conf = conf_with_report_script(&lab);
    let helper = lab.helper_cnf();
    let args = [
        "report".to_string(),
        format!("--conf={conf}"),
        format!("--helper-conf={helper}"),
        "--subject=test".into(),
        "--body=body".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = lab.helper(&args);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    assert!(stderr(&o).contains("chmod 600"), "{}", both(&o));
    assert!(!both(&o).contains(token));
    assert!(r.got("http").is_empty());

    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let watch = LeakWatch::start(vec![token.to_string()]);
    let o = lab.helper(&args);
    // Most detail in the log: still no token.
    let o2 = lab.helper(&[&["-vv"], &args[..]].concat());
    let (leaks, samples) = watch.finish();
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert_eq!(o2.status.code(), Some(0), "{}", both(&o2));
    assert!(samples > 10, "{samples}");
    assert!(leaks.is_empty(), "{leaks:?}");
    let posts = r.got("http");
    assert_eq!(posts.len(), 2);
    assert_eq!(
        posts[0]["headers"]["authorization"],
        format!("Bearer {token}")
    );
    for text in [
        both(&o),
        both(&o2),
        lab.manager_log(),
        state_files(&lab.journal_dir()),
    ] {
        assert!(!text.contains(token), "the token is in a log:\n{text}");
    }
}

/// Every file of the state directory, as text.
fn state_files(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

#[test]
fn mail_over_required_starttls_with_a_password_file_verifies_the_server_and_leaks_no_secret() {
    let lab = Lab::lock();
    let dir = lab.dir().join("manager/tls");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("mgr.pem"), dir.join("mgr.key"));
    let o = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=mgr", "-addext", "subjectAltName=DNS:mgr"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl: {}", both(&o));
    let password = "pw-7c1d-lab-smtp-secret";
    let pw = dir.join("smtp.password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let tls_port = SMTP_PORT + 1;
    let r = Receivers::start_with(
        &lab,
        &[
            tls_port.to_string(),
            cert.display().to_string(),
            key.display().to_string(),
            "mha".into(),
            pw.display().to_string(),
        ],
    );
    let conf = conf_with_report_script(&lab);
    let helper = lab.helper_cnf();
    let settings = |ca: bool| {
        format!(
            "[default]\nnotify_smtp_server = mgr:{tls_port}\nnotify_smtp_tls = starttls\n\
             notify_smtp_user = mha\nnotify_smtp_password_file = {}\n{}\
             notify_mail_from = mha@lab.example\nnotify_mail_to = dba@lab.example\nnotify_timeout = 5\n\
             notify_command = sleep 0.5\n",
            pw.display(),
            if ca {
                format!("notify_ca_file = {}\n", cert.display())
            } else {
                String::new()
            }
        )
    };
    let report = |lab: &Lab| {
        lab.helper(&[
            "-vv",
            "report",
            &format!("--conf={conf}"),
            &format!("--helper-conf={helper}"),
            "--subject=tls test",
            "--body=body",
        ])
    };

    let watch = LeakWatch::start(vec![password.to_string()]);
    // The system's roots do not know this server: refused, nothing sent.
    lab.set_helper_conf(&settings(false));
    let refused = report(&lab);
    assert_eq!(refused.status.code(), Some(1), "{}", both(&refused));
    assert!(
        stderr(&refused).contains("notification failed: mail"),
        "{}",
        both(&refused)
    );
    assert!(
        stderr(&refused).contains("certificate verify failed"),
        "{}",
        both(&refused)
    );
    assert!(r.got("mail").is_empty());
    // Trusting its certificate: STARTTLS, AUTH, delivered.
    lab.set_helper_conf(&settings(true));
    let sent = report(&lab);
    let (leaks, samples) = watch.finish();
    assert_eq!(sent.status.code(), Some(0), "{}", both(&sent));
    let mails = r.got("mail");
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["auth"], "mha");
    assert_eq!(mails[0]["tls"], true);
    assert!(samples > 10 && leaks.is_empty(), "{samples} {leaks:?}");
    for text in [
        both(&refused),
        both(&sent),
        lab.manager_log(),
        state_files(&lab.journal_dir()),
    ] {
        assert!(
            !text.contains(password),
            "the password is in a log:\n{text}"
        );
    }
}

#[test]
fn check_notify_sends_the_problems_it_finds_and_nothing_when_all_pass() {
    let lab = Lab::lock();
    let r = Receivers::start(&lab);
    lab.set_helper_conf(&format!(
        "[default]\nnotify_webhook_url = {}\nnotify_webhook_format = slack\n",
        r.url("/ok")
    ));
    let o = lab.check(&["--notify"]);
    assert_eq!(o.status.code(), Some(0), "{}", both(&o));
    assert!(r.got("http").is_empty(), "a passing check sends nothing");

    lab.stop_replica("db3");
    let o = lab.check(&["--notify"]);
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
    let posts = r.got("http");
    assert_eq!(posts.len(), 1);
    let body: serde_json::Value = serde_json::from_str(posts[0]["body"].as_str().unwrap()).unwrap();
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("*mha-helper check: app1: "), "{text}");
    assert!(
        text.contains("db3") && text.contains("replication stopped"),
        "{text}"
    );
    assert!(text.contains("to do"), "{text}");
}
