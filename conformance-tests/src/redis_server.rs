//! A private `redis-server` for tests: started on a free loopback port with its own
//! temporary directory, restartable and stoppable for fault tests, killed when dropped —
//! and, through a watchdog, when the test process exits without dropping it.
//!
//! Never touches a server it did not start (in particular not the one on port 6379).
//!
//! Environment:
//! - `PULSE_REDIS_URL`: use that server instead of starting one ([`shared_url`] only);
//! - `PULSE_REQUIRE_REDIS=1`: a missing or failing `redis-server` is a test failure instead
//!   of a visible skip.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// A running (or stopped) private server.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Mutex<Option<Child>>,
}

/// True when `PULSE_REQUIRE_REDIS=1`.
pub fn redis_required() -> bool {
    std::env::var("PULSE_REQUIRE_REDIS").is_ok_and(|v| v == "1")
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    // Ready: `+PONG`, or `-NOAUTH` when it requires a password (not `-LOADING`).
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && (&buf == b"+PONG\r\n" || buf.starts_with(b"-NOAUTH"))
}

impl RedisServer {
    /// Starts a server with default test settings (no persistence).
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `["--appendonly", "yes"]`).
    pub fn start_with(extra: &[&str]) -> std::io::Result<Self> {
        let mut last_err = None;
        for _ in 0..5 {
            let port = free_port()?;
            let dir =
                std::env::temp_dir().join(format!("pulse-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let server = RedisServer {
                port,
                dir,
                args: extra.iter().map(|s| s.to_string()).collect(),
                child: Mutex::new(None),
            };
            match server.spawn() {
                Ok(()) => {
                    server.watchdog()?;
                    return Ok(server);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("could not start redis-server")))
    }

    fn spawn(&self) -> std::io::Result<()> {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::fs::write(self.dir.join("pid"), child.id().to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(self.port) {
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "redis-server exited: {status}"
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(std::io::Error::other("redis-server did not answer PING"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        *self.child.lock().unwrap() = Some(child);
        Ok(())
    }

    /// Kills the server when this test process goes away, even without `Drop` (statics).
    fn watchdog(&self) -> std::io::Result<()> {
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
             kill -9 $(cat {dir}/pid) 2>/dev/null; rm -rf {dir}",
            me = std::process::id(),
            dir = self.dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(())
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// True unless the server was stopped (and not restarted since).
    pub fn is_running(&self) -> bool {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Kills the server (SIGKILL: like a crash). Idempotent.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port and directory.
    pub fn restart(&self) -> std::io::Result<()> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The port may linger briefly after the kill.
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The URL of the server shared by every test of this test binary: `PULSE_REDIS_URL` if
/// set, else a private server started on first use. `None` (after printing why) when no
/// server can be started; panics instead when [`redis_required`].
pub fn shared_url() -> Option<String> {
    if let Ok(url) = std::env::var("PULSE_REDIS_URL") {
        return Some(url);
    }
    static SERVER: OnceLock<Option<RedisServer>> = OnceLock::new();
    let server = SERVER.get_or_init(|| match RedisServer::start() {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("SKIPPING Redis tests: cannot start redis-server ({e}); set PULSE_REQUIRE_REDIS=1 to fail instead");
            None
        }
    });
    match server {
        Some(s) => Some(s.url()),
        None if redis_required() => {
            panic!("PULSE_REQUIRE_REDIS=1 but redis-server could not be started")
        }
        None => None,
    }
}

/// A private server for one test that needs to restart or stop it; `None` (after printing
/// why) when none can be started, panicking instead when [`redis_required`].
pub fn private_server(extra: &[&str]) -> Option<RedisServer> {
    match RedisServer::start_with(extra) {
        Ok(s) => Some(s),
        Err(e) if redis_required() => panic!("PULSE_REQUIRE_REDIS=1 but redis-server failed: {e}"),
        Err(e) => {
            eprintln!("SKIPPING: cannot start redis-server ({e})");
            None
        }
    }
}
