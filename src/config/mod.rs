//! Configuration: MHA's application file read exactly as MHA reads it, and mha-helper's own optional
//! settings file. Both go through one Config::Tiny-compatible line reader so that comments, quotes and
//! line numbers mean the same everywhere.

mod backticks;
pub mod helper;
pub mod ini;
pub mod mha;
pub mod notify;
pub mod value;

pub use helper::{AccountName, BlockMethod, HelperConfig, HostSettings, SuperReadOnly, WriterVip};
pub use ini::Ini;
pub use mha::{MhaConfig, Server};
