//! A command of the operator's (`notify_command`), the event as JSON on its
//! stdin; exit 0 is success (see `local::run`).

use std::time::Duration;

use anyhow::Result;

use super::{Event, Sink};

pub struct Command {
    command: String,
}

impl Command {
    pub fn new(command: &str) -> Command {
        Command {
            command: command.to_string(),
        }
    }
}

impl Sink for Command {
    fn describe(&self) -> String {
        format!("command `{}`", self.command)
    }

    fn deliver(&self, event: &Event, timeout: Duration) -> Result<()> {
        crate::local::run(&self.command, &serde_json::to_vec(event)?, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_arrives_as_json_on_stdin() {
        let out = std::env::temp_dir().join(format!("mha-helper-cmd-{}", std::process::id()));
        let c = Command::new(&format!("cat > {}", out.display()));
        c.deliver(&Event::alert("app1", "s", "b"), Duration::from_secs(5))
            .unwrap();
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(got["schema"], "mha-helper.event/1");
        assert_eq!(got["kind"], "alert");
        std::fs::remove_file(out).unwrap();
    }
}
