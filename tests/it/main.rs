//! The integration tests: one binary, one module per concern, sharing the
//! helpers in `common`. The hostile-input table is a binary of its own
//! (`tests/hostile.rs`), because each of its rows is reported as a test.

// Test and benchmark data is built with deliberate truncating casts.
#![allow(clippy::cast_possible_truncation)]

mod backup_hostile;
mod blobs;
mod cli;
mod common;
mod crash;
mod fixtures;
mod gzip_threads;
mod manual;
mod operations;
mod output_safety;
mod point_in_time;
mod recover_hostile;
mod repository_safety;
mod standby;
mod walker_props;
mod write_paths;
