//! `check --format prometheus`: the check's findings and the last switch in
//! Prometheus' text exposition format, for node_exporter's textfile
//! collector (run `check` from cron into a `.prom` file).

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::state::history::Switch;

/// What the check found, as the metrics need it.
pub struct Findings {
    pub app: String,
    pub ok: bool,
    pub elapsed_ms: u64,
    pub master: Option<String>,
    pub hosts: Vec<Host>,
}

/// One host as the check found it.
pub struct Host {
    pub name: String,
    pub ok: bool,
    /// None: SSH or the server did not answer.
    pub read_only: Option<bool>,
    /// A replica's (both threads running, seconds behind when known).
    pub replica: Option<(bool, Option<u64>)>,
}

/// A label value as the text format wants it: `\`, `"` and newlines
/// escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out {
    text: String,
    app: String,
}

impl Out {
    /// `# HELP` and `# TYPE` of a gauge.
    fn gauge(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} gauge");
    }

    /// One sample with the app label and `labels` (name, value).
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let mut l = format!("app=\"{}\"", label(&self.app));
        for (k, v) in labels {
            let _ = write!(l, ",{k}=\"{}\"", label(v));
        }
        let _ = writeln!(self.text, "{name}{{{l}}} {value}");
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// A per-host metric's value for a host (None: no sample).
type PerHost<'a> = dyn Fn(&Host) -> Option<f64> + 'a;

/// The metrics of `report` and of the application's last switch (`ended`:
/// when its journal was closed).
pub fn render(report: &Findings, last: Option<&Switch>, ended: Option<SystemTime>) -> String {
    let mut o = Out {
        text: String::new(),
        app: report.app.clone(),
    };
    o.gauge("mha_helper_check_success", "1 when every check passed.");
    o.sample("mha_helper_check_success", &[], flag(report.ok));
    o.gauge(
        "mha_helper_check_duration_seconds",
        "How long the check took.",
    );
    o.sample(
        "mha_helper_check_duration_seconds",
        &[],
        report.elapsed_ms as f64 / 1000.0,
    );
    let per_host: [(&str, &str, &PerHost); 6] = [
        (
            "mha_helper_host_check_success",
            "1 when the host passed every check.",
            &|h| Some(flag(h.ok)),
        ),
        (
            "mha_helper_host_up",
            "1 when SSH and the server answered.",
            &|h| Some(flag(h.read_only.is_some())),
        ),
        (
            "mha_helper_read_only",
            "The server's read_only (1 on).",
            &|h| h.read_only.map(flag),
        ),
        (
            "mha_helper_master",
            "1 on the host the check found to be the master.",
            &|h| Some(flag(report.master.as_deref() == Some(h.name.as_str()))),
        ),
        (
            "mha_helper_replication_running",
            "1 when both replication threads of a replica run.",
            &|h| h.replica.map(|(running, _)| flag(running)),
        ),
        (
            "mha_helper_replication_lag_seconds",
            "Seconds_Behind_Master of a replica (absent while unknown).",
            &|h| h.replica.and_then(|(_, lag)| lag).map(|l| l as f64),
        ),
    ];
    for (name, help, value) in per_host {
        o.gauge(name, help);
        for h in &report.hosts {
            if let Some(v) = value(h) {
                o.sample(name, &[("host", &h.name)], v);
            }
        }
    }
    if let Some(s) = last {
        last_switch(&mut o, s, ended);
    }
    o.text
}

fn last_switch(o: &mut Out, s: &Switch, ended: Option<SystemTime>) {
    o.gauge(
        "mha_helper_last_switch_info",
        "The last switch the journals record (1), its kind, masters and outcome as labels.",
    );
    let labels = [
        ("id", s.id.as_str()),
        ("kind", s.kind.as_str()),
        ("outcome", s.outcome.as_str()),
        ("orig_master", s.orig_master.as_str()),
        ("new_master", s.new_master.as_str()),
    ];
    o.sample("mha_helper_last_switch_info", &labels, 1.0);
    let secs = ended
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    if let Some(secs) = secs {
        o.gauge(
            "mha_helper_last_switch_end_timestamp_seconds",
            "When the last switch's journal was last written (Unix time).",
        );
        o.sample(
            "mha_helper_last_switch_end_timestamp_seconds",
            &[],
            secs.floor(),
        );
    }
    o.gauge(
        "mha_helper_last_switch_success",
        "1 when the last switch completed, 0 when it was rolled back or is open.",
    );
    o.sample(
        "mha_helper_last_switch_success",
        &[],
        flag(s.outcome == "completed"),
    );
    if let Some(ms) = s.write_block_ms {
        o.gauge(
            "mha_helper_last_switch_write_block_seconds",
            "The last switch's write-block window: first block on the old master to the new master writable.",
        );
        o.sample(
            "mha_helper_last_switch_write_block_seconds",
            &[],
            ms as f64 / 1000.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, ok: bool) -> Host {
        Host {
            name: name.into(),
            ok,
            read_only: Some(name != "db1"),
            replica: (name != "db1").then_some((ok, Some(3))),
        }
    }

    #[test]
    fn every_sample_is_typed_labelled_and_escaped() {
        let report = Findings {
            ok: false,
            app: "app\"1".into(),
            master: Some("db1".into()),
            hosts: vec![host("db1", true), host("db2", false)],
            elapsed_ms: 1500,
        };
        let last = Switch {
            id: "s1".into(),
            kind: "online".into(),
            outcome: "completed".into(),
            orig_master: "db2".into(),
            new_master: "db1".into(),
            write_block_ms: Some(412),
            ..Default::default()
        };
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_000_000);
        let t = render(&report, Some(&last), Some(at));
        assert!(
            t.contains("mha_helper_check_success{app=\"app\\\"1\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("mha_helper_host_check_success{app=\"app\\\"1\",host=\"db2\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("mha_helper_master{app=\"app\\\"1\",host=\"db1\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("mha_helper_last_switch_write_block_seconds{app=\"app\\\"1\"} 0.412\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "mha_helper_last_switch_end_timestamp_seconds{app=\"app\\\"1\"} 1796000000\n"
            ),
            "{t}"
        );
        // every sample's metric has its TYPE line before it
        let mut typed = std::collections::HashSet::new();
        for line in t.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split('{').next().unwrap();
                assert!(typed.contains(name), "{name} untyped in:\n{t}");
            }
        }
    }
}
