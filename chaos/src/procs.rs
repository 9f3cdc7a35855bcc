//! Child processes of the harness: this same binary started in a *role* (a pool worker, a
//! stream producer, ...), and the signals the chaos sends them.
//!
//! Signals go through the system `kill` command (the workspace forbids `unsafe`, and no
//! signal crate is worth a dependency for four signals).

use std::{path::Path, process::Stdio, time::Duration};

use tokio::process::{Child, ChildStdout, Command};

/// A running child in a role.
#[derive(Debug)]
pub struct Proc {
    /// The name it records its ledger under (`<role>-<n>`).
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// True while SIGSTOPped.
    pub frozen: bool,
    child: Child,
    err_path: std::path::PathBuf,
}

/// Starts this binary as `pulse-chaos role <role>` with `env`, its ledger at
/// `<ledger_dir>/<name>.log` and its stderr (retries, errors, panics) in
/// `<ledger_dir>/<name>.err` ([`Proc::stderr_tail`]). Stdout is piped when `piped` (the
/// caller reads it), else discarded.
pub fn spawn(
    role: &str,
    name: &str,
    ledger_dir: &Path,
    env: &[(&str, String)],
    piped: bool,
) -> std::io::Result<Proc> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["role", role])
        .env("CHAOS_NAME", name)
        .env("CHAOS_LEDGER", ledger_dir.join(format!("{name}.log")))
        .stdin(Stdio::null())
        .stdout(if piped { Stdio::piped() } else { Stdio::null() })
        .stderr(std::fs::File::create(
            ledger_dir.join(format!("{name}.err")),
        )?)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("child exited at once"))?;
    Ok(Proc {
        name: name.to_owned(),
        pid,
        frozen: false,
        child,
        err_path: ledger_dir.join(format!("{name}.err")),
    })
}

fn signal(pid: u32, sig: &str) -> std::io::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -s {sig} {pid} failed")))
    }
}

impl Proc {
    /// The piped stdout, once (see [`spawn`]).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// SIGKILL, then reap: when this returns the process is gone.
    pub async fn kill(&mut self) -> std::io::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// SIGSTOP: the whole process stands still (timers, sockets, everything).
    pub fn freeze(&mut self) -> std::io::Result<()> {
        signal(self.pid, "STOP")?;
        self.frozen = true;
        Ok(())
    }

    /// SIGCONT after [`freeze`](Self::freeze).
    pub fn resume(&mut self) -> std::io::Result<()> {
        signal(self.pid, "CONT")?;
        self.frozen = false;
        Ok(())
    }

    /// SIGTERM (the role leaves gracefully), then waits up to `grace` before SIGKILL.
    /// Returns true when it exited on its own.
    pub async fn terminate(&mut self, grace: Duration) -> std::io::Result<bool> {
        if self.frozen {
            self.resume()?;
        }
        signal(self.pid, "TERM")?;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => Ok(status?.success()),
            Err(_) => {
                self.kill().await?;
                Ok(false)
            }
        }
    }

    /// The last `lines` lines the process wrote to stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.err_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// True when the process has exited (without waiting).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// A small deterministic random generator (xorshift64*), seeded per run and printed so a
/// run's fault sequence can be replayed with `--seed`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// A duration uniformly in `lo..hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis().max(1) as u64;
        lo + Duration::from_millis(self.next_u64() % span)
    }
}
