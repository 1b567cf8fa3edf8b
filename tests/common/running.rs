//! A `headstart` subcommand that listens (serve, studio), run on a free port for one test and stopped after it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Running {
    child: Child,
    /// Its first line on standard error: where it tells its address.
    pub first_line: String,
    /// What it printed on standard error after that.
    printed: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// Starts `headstart ARGS --port 0` and waits for its first line on standard error.
    pub fn start(args: &[&str]) -> Running {
        Running::start_with_env(args, &[])
    }

    /// [`Running::start`] with these environment variables set.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_headstart"))
            .args(args)
            .envs(env.iter().copied())
            .args(["--port", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let first_line = lines.next().unwrap().unwrap();
        // Keep draining stderr so the process never blocks on a full pipe.
        let printed = Arc::new(Mutex::new(Vec::new()));
        let kept = printed.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Running {
            child,
            first_line,
            printed,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Waits (up to a minute) for a line starting with `start` on its standard error, and returns it.
    pub fn printed_line(&self, start: &str) -> String {
        for _ in 0..600 {
            let printed = self.printed.lock().unwrap();
            if let Some(line) = printed.iter().find(|line| line.starts_with(start)) {
                return line.clone();
            }
            drop(printed);
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no line '{start}…' in {:?}", self.printed.lock().unwrap());
    }

    /// SIGTERM, and the exit status once it has stopped (a test's time limit ends a wait that never does).
    pub fn stop(mut self) -> ExitStatus {
        // `self` is dropped after: killing a process already reaped does nothing.
        self.signal("TERM");
        self.child.wait().unwrap()
    }
}

impl Drop for Running {
    /// A failed test leaves nothing running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
