//! MHA's hook contract puts the MySQL passwords in our command line
//! (`--orig_master_password=...`), where any user on the manager can read
//! them in /proc/PID/cmdline for as long as we run. As the mysql client does
//! with `--password`, we overwrite those values in our own argv memory first
//! thing after start, so the window is microseconds, not the whole switch.
//! (MHA's own `sh -c` parent still holds its copy; that is MHA's leak.)

use std::fs;

/// Arguments whose values are secrets.
pub const SECRET_PREFIXES: &[&str] = &["--orig_master_password=", "--new_master_password="];

/// Overwrite with `x` the value of every argument starting with one of
/// `prefixes`, in this process's argv as the kernel shows it. Returns how
/// many arguments were scrubbed. Linux only; does nothing when /proc is not
/// readable.
pub fn scrub_own_argv(prefixes: &[&str]) -> usize {
    let (Ok(stat), Ok(cmdline)) = (
        fs::read_to_string("/proc/self/stat"),
        fs::read("/proc/self/cmdline"),
    ) else {
        return 0;
    };
    let Some((start, end)) = arg_region(&stat) else {
        return 0;
    };
    let mut scrubbed = 0;
    for (offset, len) in secret_spans(&cmdline, prefixes) {
        if start + offset + len > end {
            continue;
        }
        for i in 0..len {
            // SAFETY: [arg_start, arg_end) is this process's own argv
            // area (on its stack, writable); the span lies inside it, as
            // checked above, and /proc/self/cmdline mirrors it byte for byte.
            unsafe { std::ptr::write_volatile((start + offset + i) as *mut u8, b'x') };
        }
        scrubbed += 1;
    }
    scrubbed
}

/// `arg_start` and `arg_end` (fields 48 and 49 of /proc/self/stat).
fn arg_region(stat: &str) -> Option<(usize, usize)> {
    // Fields after the command name, which is in parentheses and may hold
    // spaces; field 3 is the first after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let start = fields.get(48 - 3)?.parse().ok()?;
    let end = fields.get(49 - 3)?.parse().ok()?;
    (start > 0 && end > start).then_some((start, end))
}

/// (offset, length) of each secret value in a NUL-separated argv image.
fn secret_spans(cmdline: &[u8], prefixes: &[&str]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut offset = 0;
    for arg in cmdline.split(|b| *b == 0) {
        for p in prefixes {
            if arg.starts_with(p.as_bytes()) && arg.len() > p.len() {
                spans.push((offset + p.len(), arg.len() - p.len()));
            }
        }
        offset += arg.len() + 1;
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_only_the_secret_values() {
        let img = b"mha-helper\0--command=stop\0--orig_master_password=s3cr$t\0--new_master_password=\0--x=1\0";
        let spans = secret_spans(img, SECRET_PREFIXES);
        assert_eq!(spans.len(), 1, "an empty value has nothing to scrub");
        let (o, l) = spans[0];
        assert_eq!(&img[o..o + l], b"s3cr$t");
    }

    #[test]
    fn arg_region_is_read_past_a_command_name_with_spaces() {
        let mut stat = String::from("123 (a b) c) S");
        for i in 4..=52 {
            stat.push_str(&format!(
                " {}",
                if i == 48 {
                    1000
                } else if i == 49 {
                    2000
                } else {
                    i
                }
            ));
        }
        assert_eq!(arg_region(&stat), Some((1000, 2000)));
    }

    #[test]
    fn scrubbing_our_own_argv_without_secrets_changes_nothing() {
        let before = fs::read("/proc/self/cmdline").unwrap();
        assert_eq!(scrub_own_argv(&["--no-such-prefix-in-test-argv="]), 0);
        assert_eq!(fs::read("/proc/self/cmdline").unwrap(), before);
    }
}
