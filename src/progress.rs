//! A one-line progress bar on stderr with rate and ETA, drawn only on a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    enabled: bool,
    total: usize,
    unit: &'static str,
    started: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    /// Draws only when `wanted` and stderr is a terminal.
    pub fn new(unit: &'static str, wanted: bool) -> Self {
        Progress {
            enabled: wanted && std::io::stderr().is_terminal(),
            total: 0,
            unit,
            started: Instant::now(),
            last_draw: None,
        }
    }

    /// `total` comes with every update, from the work itself, so callers need not count in advance.
    pub fn update(&mut self, done: usize, total: usize) {
        self.total = total;
        if !self.enabled
            || self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            done as f64 / elapsed
        } else {
            0.0
        };
        let eta = if rate > 0.0 {
            (self.total.saturating_sub(done)) as f64 / rate
        } else {
            0.0
        };
        let width = 30;
        let filled = (width * done)
            .checked_div(self.total)
            .unwrap_or(width)
            .min(width);
        eprint!(
            "\r[{}{}] {done}/{} {} {rate:.1}/s ETA {:.0}s   ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.total,
            self.unit,
            eta
        );
        let _ = std::io::stderr().flush();
    }

    /// Clears the bar.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            eprint!("\r{}\r", " ".repeat(80));
            let _ = std::io::stderr().flush();
        }
    }
}
