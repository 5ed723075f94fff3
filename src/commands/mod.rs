//! The modes: `-B`, `-R` and `-V`, one file each, built on the repository,
//! the Data.fs reader and the disk layer. New commands land here.

pub mod backup;
mod in_place;
pub mod recover;
pub mod verify;
