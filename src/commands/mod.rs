//! The modes: `-B`, `-R` and `-V`, one file each, built on the repository,
//! the Data.fs reader and the disk layer. New commands land here.

pub mod backup;
mod deep;
pub(crate) mod history;
mod in_place;
pub mod list;
pub mod prune;
pub mod recover;
pub mod transactions;
pub mod verify;
