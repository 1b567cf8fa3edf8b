//! One file per command: its arguments, the library call it makes, and how it prints the answer.

pub mod audit;
pub mod cache;
pub mod datasets;
pub mod demo;
pub mod doctor;
pub mod embed;
pub mod eval;
pub mod export;
pub mod inspect;
pub mod models;
pub mod predict;
pub mod serve;
pub mod studio;
pub mod train;
