//! The one JSON shape of every command's `--format json` output (schema
//! `mha-helper.output/1`): `schema`, `command`, `exit_code`, `ok` (exit 0,
//! or a hook's 10), `error` (null unless the command failed, then one line
//! saying why) beside the command's own fields. A command hands its fields
//! over ([`set`]); the one document is printed once its result is known
//! ([`finish`]), with the error alone if it failed before it had any.

use std::sync::Mutex;

use anyhow::Result;

use crate::exit::Code;

use serde::Serialize;
use serde_json::{json, Value};

pub const SCHEMA: &str = "mha-helper.output/1";

/// The command's own fields, handed over for the document.
static FIELDS: Mutex<Option<Value>> = Mutex::new(None);

/// `body`'s fields with the common ones.
pub fn document(command: &str, code: i32, error: Option<&str>, body: impl Serialize) -> Value {
    let mut v =
        serde_json::to_value(body).unwrap_or_else(|e| json!({ "unprintable": e.to_string() }));
    if !v.is_object() {
        v = json!({ "result": v });
    }
    v["schema"] = SCHEMA.into();
    v["command"] = command.into();
    v["exit_code"] = code.into();
    v["ok"] = (code == Code::Ok as i32 || code == Code::Proceed as i32).into();
    v["error"] = error.into();
    v
}

/// Hand the command's fields over for its document (the last one wins).
pub fn set(body: impl Serialize) {
    let v = serde_json::to_value(body).unwrap_or_else(|e| json!({ "unprintable": e.to_string() }));
    if let Ok(mut f) = FIELDS.lock() {
        *f = Some(v);
    }
}

/// Print `command`'s document for its `result` on stdout.
pub fn finish(command: &str, result: &Result<Code>) {
    let fields = FIELDS
        .lock()
        .ok()
        .and_then(|mut f| f.take())
        .unwrap_or_else(|| json!({}));
    let (code, error) = match result {
        Ok(c) => (*c as i32, None),
        Err(e) => (
            crate::exit::code_for(e) as i32,
            Some(crate::exit::message(e)),
        ),
    };
    let v = document(command, code, error.as_deref(), fields);
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_carries_schema_command_ok_and_error() {
        let v = document("status", 0, None, json!({ "master": "db1" }));
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["command"], "status");
        assert_eq!(
            (v["ok"].as_bool(), v["exit_code"].as_i64()),
            (Some(true), Some(0))
        );
        assert!(v["error"].is_null());
        assert_eq!(v["master"], "db1");
        let v = document("history", 2, Some("no state directory"), vec![1, 2]);
        assert_eq!(
            (v["ok"].as_bool(), v["error"].as_str()),
            (Some(false), Some("no state directory"))
        );
        assert_eq!(v["result"], json!([1, 2]));
        // a hook's 10 is done, with a warning
        assert_eq!(
            document("master-ip-failover", 10, None, json!({}))["ok"],
            true
        );
    }
}
